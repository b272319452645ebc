// Builds the chat page into dist/ with fixed file names (the gateway embeds
// dist/index.html, dist/assets/app.js and dist/assets/app.css), and runs the tests.
import { defineConfig } from "vitest/config";

export default defineConfig({
  root: "src/app",
  publicDir: false,
  base: "/",
  build: {
    outDir: "../../dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    rollupOptions: {
      output: {
        entryFileNames: "assets/app.js",
        chunkFileNames: "assets/[name].js",
        assetFileNames: (info) => (info.names.some((n) => n.endsWith(".css")) ? "assets/app.css" : "assets/[name][extname]"),
      },
    },
  },
  test: {
    root: ".",
    include: ["test/**/*.test.ts", "browser/**/*.test.ts"],
    // One gateway (and browser) at a time on a 2-core machine.
    fileParallelism: false,
    // Upper bounds for a loaded machine, not expectations: every wait polls for its condition.
    testTimeout: 180_000,
    expect: { poll: { timeout: 20_000 } },
    hookTimeout: 60_000,
  },
});
