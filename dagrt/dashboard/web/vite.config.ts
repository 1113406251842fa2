import { defineConfig } from 'vitest/config';

// The page is served by dagrt/dashboard/server.py from ../static (index.html at "/",
// hashed files under "/assets"). Relative asset URLs keep it working behind a prefix.
export default defineConfig({
  base: './',
  esbuild: {
    jsx: 'automatic',
    jsxImportSource: 'preact',
    legalComments: 'none',
  },
  build: {
    outDir: '../static', // relative to this directory (the root)
    emptyOutDir: true,
    assetsDir: 'assets',
    target: 'es2022',
    sourcemap: false,
    modulePreload: { polyfill: false },
    reportCompressedSize: true,
  },
  worker: { format: 'es' },
  server: {
    // `npm run dev` against a running `dagrt dashboard --port 8787`.
    proxy: { '/api': { target: 'http://127.0.0.1:8787', ws: true } },
  },
  test: {
    environment: 'node',
    include: ['src/**/*.test.ts'],
  },
});
