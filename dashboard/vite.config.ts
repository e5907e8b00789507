import { defineConfig } from 'vitest/config';

// Served by the hub's dashboard function under /ui/, one path segment per file (the routes are
// `GET /ui` and `GET /ui/{file}`), so every asset sits at the top of dist/.
export default defineConfig({
  base: '/ui/',
  build: { outDir: 'dist', assetsDir: '', emptyOutDir: true, sourcemap: false },
  test: { environment: 'node' },
});
