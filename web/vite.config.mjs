// Vite's settings for the web client (web/). `node scripts/build-web.mjs` builds with them into
// web/dist, which the app server serves at `/`; `npx vite web` runs a dev server that forwards
// the API and the WebSocket to a local `parley up`.
import { defineConfig } from 'vite';

export default defineConfig({
  root: import.meta.dirname,
  base: '/',
  publicDir: 'public',
  // JSX is compiled by Vite's own transformer with Preact's runtime: no plugin needed.
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    assetsDir: 'assets',
    sourcemap: false,
    // Only modern browsers run the client; the polyfill would be dead weight.
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
  server: {
    proxy: {
      '/v1': { target: 'http://127.0.0.1:8080', ws: true },
    },
  },
});
