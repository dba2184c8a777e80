// Serves the built web client (web/dist) at `/`. The files are read once, when the app is built,
// and kept in memory with their gzip form: the client is small and fixed for a process's life, so
// no request touches the disk and no path from a request ever reaches the file system.
// Hashed assets are cached for a year; everything else revalidates with its ETag. Any other GET
// that is not an API path gets index.html (the client routes itself); API paths keep their 404.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorTitles } from '../errors/errors.ts';

/** Where `npm run build:web` puts the client. */
export const webDistDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'web', 'dist');

/** Paths that belong to the API: never answered with the client, so their 404 stays problem+json. */
const apiPrefixes = ['/v1', '/healthz', '/readyz', '/metrics'];
/** Limits on what is loaded into memory: a web client is tens of KiB, not this. */
const webFilesMax = 1000;
const webBytesMax = 32 * 1024 * 1024;
/** Files smaller than this are sent as they are. */
const gzipMinBytes = 1024;

const contentTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.ico': 'image/x-icon',
  '.webp': 'image/webp',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

/** The page may load only what it is served from here, and talk only to here. */
const contentSecurityPolicy = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "worker-src 'self'",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** One file of the client, ready to send. */
export interface WebFile {
  body: Buffer;
  gzip: Buffer | undefined;
  contentType: string;
  etag: string;
  cacheControl: string;
}

/** Reads web/dist into memory: URL path → file. Empty when the client is not built. */
export function loadWebFiles(dir: string = webDistDir): Map<string, WebFile> {
  const files = new Map<string, WebFile>();
  if (!existsSync(dir)) return files;
  let total = 0;
  const visit = (path: string): void => {
    for (const name of readdirSync(path)) {
      const full = join(path, name);
      if (statSync(full).isDirectory()) {
        visit(full);
        continue;
      }
      const urlPath = `/${relative(dir, full).split(sep).join('/')}`;
      const body = readFileSync(full);
      total += body.length;
      if (files.size >= webFilesMax || total > webBytesMax) {
        throw new Error(`Cannot serve ${dir}: more than ${webFilesMax} files or ${webBytesMax / 1024 / 1024} MiB; is it really the built web client?`);
      }
      const contentType = contentTypes[extname(name).toLowerCase()] ?? 'application/octet-stream';
      const compressible = /^(text\/|application\/(json|manifest\+json)|image\/svg)/.test(contentType);
      const gzipped = compressible && body.length >= gzipMinBytes ? gzipSync(body, { level: 9 }) : undefined;
      files.set(urlPath, {
        body,
        gzip: gzipped && gzipped.length < body.length ? gzipped : undefined,
        contentType,
        etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
        // Vite names every file under assets/ by its content hash: it never changes under a name.
        cacheControl: urlPath.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
      });
    }
  };
  visit(dir);
  return files;
}

function isApiPath(path: string): boolean {
  return apiPrefixes.some((prefix) => path === prefix || path.startsWith(`${prefix}/`));
}

function send(request: FastifyRequest, reply: FastifyReply, file: WebFile): FastifyReply {
  reply.header('cache-control', file.cacheControl).header('etag', file.etag).header('x-content-type-options', 'nosniff');
  if (file.contentType.startsWith('text/html')) {
    reply.header('content-security-policy', contentSecurityPolicy).header('referrer-policy', 'no-referrer').header('x-frame-options', 'DENY');
  }
  if (file.gzip) reply.header('vary', 'accept-encoding');
  const match = request.headers['if-none-match'];
  if (typeof match === 'string' && match.split(',').some((tag) => tag.trim() === file.etag || tag.trim() === `W/${file.etag}`)) {
    return reply.code(304).send();
  }
  reply.type(file.contentType);
  const accepts = request.headers['accept-encoding'];
  if (file.gzip && typeof accepts === 'string' && /\bgzip\b/.test(accepts)) {
    return reply.header('content-encoding', 'gzip').send(file.gzip);
  }
  return reply.send(file.body);
}

/** Serves the web client at `/` (and its files); see the top of this file. */
export function registerWebClient(app: FastifyInstance, options: { dir?: string } = {}): void {
  const files = loadWebFiles(options.dir);
  const index = files.get('/index.html');
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    let path: string;
    try {
      path = decodeURIComponent((request.url.split('?')[0] ?? '/').split('#')[0] ?? '/');
    } catch {
      return reply.callNotFound();
    }
    if (isApiPath(path)) return reply.callNotFound();
    const file = files.get(path);
    if (file) return send(request, reply, file);
    // A missing file (an old asset, a typo) is a 404, never the page: a script must not get HTML.
    if (path.startsWith('/assets/') || extname(path) !== '') return reply.callNotFound();
    if (!index) {
      const detail = 'The web client is not built: run `npm run build:web` (npm start and npm test build it when needed)';
      return reply
        .code(404)
        .type('application/problem+json')
        .send({ type: 'https://parley.invalid/problems/not_found', title: errorTitles.not_found, status: 404, detail, code: 'not_found' });
    }
    return send(request, reply, index);
  };
  app.get('/', handler);
  app.get('/*', handler);
}
