/**
 * Part of `npm run build` (after tsc has type-checked and compiled everything); the Dockerfiles run
 * it too. Each deployed service becomes one self-contained ES module, `dist/bundle/NAME/main.mjs`:
 * the file the image ships and every local way of running the service starts. Node then reads one
 * file instead of ~100 packages' files one by one, which was most of a cold start.
 *
 * - A package the code imports with `await import()` (google-auth-library, calling's key-file path)
 *   is built into its own file beside main.mjs and loaded from there on first use, so the metadata
 *   path never parses it.
 * - `pino-pretty` (a dev dependency, for terminals) is required at run time through createRequire
 *   and is not bundled; where it is not installed (the images) logs stay JSON.
 * - The `debug` package (Express, its router, body-parser, send) is a no-op: with DEBUG set it
 *   would write request URLs, query strings and all, to stderr, past the request log that keeps
 *   tokens out of log lines.
 * - Whitespace and syntax minified, names kept: error names and stack traces read as in the source.
 *   A source map without the sources sits beside each file: with `--enable-source-maps` (e.g. in
 *   NODE_OPTIONS) stack traces point at `.ts` lines; without it Node never reads the map.
 *
 * Usage: node dist/scripts/bundle.js [SERVICE...]   (all deployed services when none is named)
 */
import { rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type BuildOptions, type Plugin } from 'esbuild';

export const BUNDLED_SERVICES = ['calling', 'receiving'] as const;
type BundledService = (typeof BUNDLED_SERVICES)[number];

/** Packages loaded with `await import()` on a rare path, and what the code takes from each. */
const LAZY_PACKAGES: Record<string, string[]> = {
  'google-auth-library': ['GoogleAuth'],
};

// Run from dist/scripts (after tsc) or from scripts/ (Node's type stripping, in the Dockerfiles).
const here = dirname(fileURLToPath(import.meta.url));
const root = basename(dirname(here)) === 'dist' ? join(here, '..', '..') : join(here, '..');

/** `debug` as a logger that is never enabled, whatever DEBUG says. */
const noDebug: Plugin = {
  name: 'no-debug',
  setup(build) {
    build.onResolve({ filter: /^debug$/ }, () => ({ path: 'debug', namespace: 'no-debug' }));
    build.onLoad({ filter: /.*/, namespace: 'no-debug' }, () => ({
      contents:
        'function createDebug() { const log = () => {}; log.enabled = false; log.extend = createDebug; return log; }\n' +
        'createDebug.enabled = () => false;\nmodule.exports = createDebug;',
      loader: 'js',
    }));
  },
};

/** `await import('pkg')` of a lazy package stays an import, of the file built beside main.mjs. */
function lazyPackagesBeside(used: Set<string>): Plugin {
  return {
    name: 'lazy-packages-beside',
    setup(build) {
      build.onResolve({ filter: /^[^./]/ }, (args) => {
        if (args.kind !== 'dynamic-import') return undefined;
        if (!(args.path in LAZY_PACKAGES)) {
          return {
            errors: [
              {
                text: `${args.path} is imported lazily but scripts/bundle.ts does not list it in LAZY_PACKAGES`,
              },
            ],
          };
        }
        used.add(args.path);
        return { path: `./${args.path}.mjs`, external: true };
      });
    },
  };
}

const common: BuildOptions = {
  absWorkingDir: root,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20.19',
  // The CommonJS packages inside (express, pino, ...) call require(); an ES module has none.
  banner: {
    js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);",
  },
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: 'linked',
  sourcesContent: false,
  legalComments: 'none',
  logLevel: 'warning',
};

export async function bundleService(service: BundledService): Promise<string> {
  const outdir = join(root, 'dist', 'bundle', service);
  rmSync(outdir, { recursive: true, force: true });
  const lazy = new Set<string>();
  await build({
    ...common,
    entryPoints: [join('services', service, 'main.ts')],
    outfile: join(outdir, 'main.mjs'),
    plugins: [noDebug, lazyPackagesBeside(lazy)],
  });
  for (const pkg of lazy) {
    await build({
      ...common,
      stdin: {
        contents: `export { ${LAZY_PACKAGES[pkg]!.join(', ')} } from '${pkg}';`,
        resolveDir: root,
        sourcefile: `${pkg}.lazy.ts`,
      },
      outfile: join(outdir, `${pkg}.mjs`),
      plugins: [noDebug],
    });
  }
  return outdir;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const asked = process.argv.slice(2);
  const unknown = asked.filter((name) => !(BUNDLED_SERVICES as readonly string[]).includes(name));
  if (unknown.length > 0) {
    process.stderr.write(
      `unknown service ${unknown.join(', ')}; bundled services: ${BUNDLED_SERVICES.join(', ')}\n`,
    );
    process.exit(2);
  }
  for (const service of asked.length > 0 ? (asked as BundledService[]) : BUNDLED_SERVICES)
    await bundleService(service);
}
