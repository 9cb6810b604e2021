// Builds the demo pages into dist/ (committed, embedded by the Go server),
// or with --tests the SDK's unit tests into dist-test/ for `node --test`.
import { build } from 'esbuild';
import { cpSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
const tests = process.argv.includes('--tests');

if (tests) {
  const outdir = join(root, 'dist-test');
  rmSync(outdir, { recursive: true, force: true });
  const dir = join(root, 'sdk', 'test');
  const entryPoints = readdirSync(dir).filter((f) => f.endsWith('.test.ts')).map((f) => join(dir, f));
  await build({
    entryPoints,
    outdir,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outExtension: { '.js': '.mjs' },
    sourcemap: 'inline',
    logLevel: 'warning',
  });
} else {
  const outdir = join(root, 'dist');
  rmSync(outdir, { recursive: true, force: true });
  mkdirSync(join(outdir, 'assets'), { recursive: true });
  await build({
    entryPoints: { demo: join(root, 'demo', 'demo.ts'), viewer: join(root, 'demo', 'viewer.ts') },
    outdir: join(outdir, 'assets'),
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome110', 'firefox115', 'safari16'],
    minify: true,
    chunkNames: 'chunk-[hash]',
    legalComments: 'none',
    logLevel: 'warning',
  });
  for (const f of ['index.html', 'viewer.html']) cpSync(join(root, 'demo', f), join(outdir, f));
  cpSync(join(root, 'demo', 'style.css'), join(outdir, 'assets', 'style.css'));
}
