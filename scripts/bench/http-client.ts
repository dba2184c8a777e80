// A lean keep-alive JSON client over node:http for load generation: one Agent with a bounded
// number of sockets, a timeout on every request, the answer as status + text. node:http costs
// the generator less CPU per request than fetch, which matters when it shares two cores with
// the server and PostgreSQL.
import http from 'node:http';

/** One answer: the status, the raw body and the Retry-After header (if any). */
export interface HttpAnswer {
  status: number;
  text: string;
  retryAfter?: string | undefined;
}

/** A keep-alive client bound to one base URL. */
export interface HttpClient {
  request(method: string, path: string, options?: { token?: string | undefined; body?: unknown }): Promise<HttpAnswer>;
  /** Like request, but fails unless the status is `expected`; returns the parsed JSON body. */
  json<T>(method: string, path: string, expected: number | readonly number[], options?: { token?: string | undefined; body?: unknown }): Promise<T>;
  close(): void;
}

/** Creates a client with at most `socketsMax` connections, each request bounded by `requestTimeoutMs`. */
export function createHttpClient(baseUrl: string, options: { socketsMax: number; requestTimeoutMs?: number }): HttpClient {
  const url = new URL(baseUrl);
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.socketsMax, maxFreeSockets: options.socketsMax, scheduling: 'fifo' });
  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000;

  function request(method: string, path: string, opts: { token?: string | undefined; body?: unknown } = {}): Promise<HttpAnswer> {
    return new Promise((resolve, reject) => {
      const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
      const headers: Record<string, string | number> = {};
      if (payload !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = Buffer.byteLength(payload);
      }
      if (opts.token) headers.authorization = `Bearer ${opts.token}`;
      const req = http.request({ host: url.hostname, port: url.port, method, path, headers, agent, timeout: requestTimeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        const retryAfter = res.headers['retry-after'];
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), retryAfter }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${path} took over ${requestTimeoutMs} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  return {
    request,
    async json<T>(method: string, path: string, expected: number | readonly number[], opts: { token?: string | undefined; body?: unknown } = {}) {
      const answer = await request(method, path, opts);
      const allowed = typeof expected === 'number' ? [expected] : expected;
      if (!allowed.includes(answer.status)) {
        throw new Error(`${method} ${path} answered ${answer.status}, expected ${allowed.join(' or ')}: ${answer.text.slice(0, 300)}`);
      }
      return JSON.parse(answer.text) as T;
    },
    close() {
      agent.destroy();
    },
  };
}
