// Parley's service worker: keeps the app shell so that a reload or a browser restart opens Parley
// while offline or while the server is down (the outbox and the offline copy live in IndexedDB).
// Page loads try the network first and fall back to the kept shell; hashed assets never change, so
// they are served from the cache. API calls and the WebSocket never pass through here.
const cacheName = 'parley-shell-v1';
const shellPath = '/';
const navigationTimeoutMs = 4000;
const apiPrefixes = ['/v1', '/healthz', '/readyz', '/metrics'];

self.addEventListener('install', (event) => {
  event.waitUntil(refreshShell().then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((name) => name !== cacheName).map((name) => caches.delete(name))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (apiPrefixes.some((prefix) => url.pathname === prefix || url.pathname.startsWith(`${prefix}/`))) return;
  if (request.mode === 'navigate') event.respondWith(navigate(event));
  else if (url.pathname.startsWith('/assets/')) event.respondWith(asset(request));
});

/** Fetches the shell and the assets it names, and forgets assets it no longer names. */
async function refreshShell() {
  const response = await fetch(shellPath, { cache: 'no-cache' });
  if (!response.ok) return;
  await keepShell(response);
}

async function keepShell(response) {
  const html = await response.clone().text();
  const cache = await caches.open(cacheName);
  const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((match) => match[1]);
  const missing = [];
  for (const path of assets) if (!(await cache.match(path))) missing.push(path);
  await cache.addAll(missing);
  await cache.put(shellPath, response);
  const wanted = new Set(assets.map((path) => new URL(path, self.location.origin).href));
  for (const request of await cache.keys()) {
    if (new URL(request.url).pathname.startsWith('/assets/') && !wanted.has(request.url)) await cache.delete(request);
  }
}

async function navigate(event) {
  try {
    const response = await fetch(event.request, { signal: AbortSignal.timeout(navigationTimeoutMs) });
    if (response.ok && (response.headers.get('content-type') ?? '').startsWith('text/html')) {
      // Keeping the fresh shell (and fetching its new assets) does not hold up the page.
      event.waitUntil(keepShell(response.clone()).catch(() => undefined));
      return response;
    }
    if (response.status < 500) return response;
  } catch {
    // offline, refused or too slow: the kept shell below
  }
  const kept = await caches.match(shellPath);
  return kept ?? Response.error();
}

async function asset(request) {
  const kept = await caches.match(request);
  if (kept) return kept;
  const response = await fetch(request);
  if (response.ok) {
    const cache = await caches.open(cacheName);
    await cache.put(request, response.clone());
  }
  return response;
}
