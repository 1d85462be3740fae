// Service Worker: lets the app load with no network. Every same-origin GET (pages,
// the wasm bundle, styles) goes to the network first and a copy is kept in a cache;
// when the network is unreachable the kept copy answers. A page is kept as the
// server renders it for nobody (fetched without cookies): no user's data is ever in
// the cache, so nothing of it outlives a sign-out or a revoked access; offline, the
// page shows what the local store holds. Sync traffic (/sync/, /api/) is never
// cached: the SQLite worker handles being offline itself. The page adds its own URL
// to the cache (sync_client::offline) once this worker is ready. It registers this
// script as /sw.js?cache=<name>: the cache is the app's own.
const CACHE = new URL(self.location.href).searchParams.get('cache') || 'sync-app-v1';
const PRECACHE = [
  '/pkg/frontend.js', '/pkg/frontend_bg.wasm', '/pkg/db-worker.js', '/pkg/frontend-db.js', '/pkg/frontend-db_bg.wasm',
  '/style/main.css', '/style/favicon.svg',
];

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches.open(CACHE).then((cache) => cache.addAll(PRECACHE)).then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(self.clients.claim());
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (url.pathname.startsWith('/sync/') || url.pathname.startsWith('/api/')) return;
  event.respondWith(networkFirst(request, event));
});

async function keepAnonymous(cache, url) {
  try {
    const anonymous = await fetch(url, { credentials: 'omit' });
    if (anonymous.ok) await cache.put(url, anonymous);
  } catch {
    // Kept next time.
  }
}

async function networkFirst(request, event) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) {
      if (request.mode === 'navigate') {
        // The page as rendered for nobody, kept after answering.
        event.waitUntil(keepAnonymous(cache, request.url));
      } else {
        await cache.put(request, response.clone());
      }
    }
    return response;
  } catch (error) {
    const kept = await cache.match(request, { ignoreSearch: true });
    if (kept) return kept;
    if (request.mode === 'navigate') {
      return new Response(
        '<!DOCTYPE html><meta charset="utf-8"><title>Offline</title>' +
          '<p>You are offline, and this page was not opened here before. Open a room you visited, or come back online.</p>',
        { status: 503, headers: { 'content-type': 'text/html; charset=utf-8' } },
      );
    }
    throw error;
  }
}
