// Builds the workbench's vendored assets from node_modules (installed by `npm ci` from
// package-lock.json) into one directory: `node build.mjs [OUTDIR]`, default
// ../../gateway/static/graphiql. The output is deterministic: the same lockfile gives the same
// bytes, which tests/portal/test_graphiql_assets.py checks against the committed copy.
//
//   graphiql.js, graphiql.css   GraphiQL, React, react-dom, Monaco (an IIFE: no module loader)
//   *.worker.js                 Monaco's editor, JSON and GraphQL workers
//   codicon.ttf                 Monaco's icon font
//   licenses/<package>@<version>/  the licence files of every package bundled in, and
//   licenses/packages.json      their names, versions and licences
import { build } from 'esbuild';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LABELS } from './src/labels.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const outdir = resolve(process.argv[2] ?? join(here, '..', '..', 'gateway', 'static', 'graphiql'));
const modules = join(here, 'node_modules');

// GraphiQL's English labels → the workbench's Chinese-first ones (src/labels.mjs), each exactly
// where the table says, or the build fails.
const relabelled = new Set();
const relabel = {
  name: 'relabel',
  setup(b) {
    b.onLoad({ filter: /[\\/]node_modules[\\/](graphiql|@graphiql[\\/][^\\/]+)[\\/]dist[\\/].*\.js$/ }, (args) => {
      const file = args.path.split(/[\\/]node_modules[\\/]/).pop().replaceAll('\\', '/');
      const labels = LABELS[file];
      if (!labels) return undefined; // esbuild reads it as it is
      let text = readFileSync(args.path, 'utf8');
      for (const [from, to, count = 1] of labels) {
        const found = text.split(from).length - 1;
        if (found !== count) throw new Error(`${file}: ${JSON.stringify(from)} found ${found} times, not ${count}`);
        text = text.replaceAll(from, to);
      }
      relabelled.add(file);
      return { contents: text, loader: 'js' };
    });
  },
};

rmSync(outdir, { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });

const result = await build({
  absWorkingDir: here,
  entryPoints: {
    graphiql: 'src/vendor.js',
    'editor.worker': 'monaco-editor/esm/vs/editor/editor.worker.js',
    'json.worker': 'monaco-editor/esm/vs/language/json/json.worker.js',
    'graphql.worker': 'monaco-graphql/esm/graphql.worker.js',
  },
  bundle: true,
  minify: true,
  format: 'iife',
  target: 'es2020',
  outdir,
  entryNames: '[name]',
  assetNames: '[name]',
  loader: { '.ttf': 'file' },
  define: { 'process.env.NODE_ENV': '"production"' },
  legalComments: 'none', // the licence files are copied whole, below
  metafile: true,
  logLevel: 'warning',
  plugins: [relabel],
});
const unused = Object.keys(LABELS).filter((file) => !relabelled.has(file));
if (unused.length) throw new Error(`labels for files not bundled: ${unused.join(', ')}`);

// Every package with a file in the bundles, by its directory under node_modules.
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const parts = input.split('/');
  const at = parts.lastIndexOf('node_modules');
  if (at < 0) continue; // src/vendor.js: ours
  const depth = parts[at + 1].startsWith('@') ? 2 : 1;
  const dir = parts.slice(0, at + 1 + depth).join('/');
  packages.set(dir, parts.slice(at + 1, at + 1 + depth).join('/'));
}

const listed = [];
for (const [dir, name] of [...packages].sort((a, b) => a[1].localeCompare(b[1]) || a[0].localeCompare(b[0]))) {
  const root = join(here, dir);
  const meta = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const files = readdirSync(root).filter((f) => /^(licen[cs]e|copying|notice)/i.test(f)).sort();
  if (listed.some((p) => p.name === name && p.version === meta.version)) continue;
  const target = join(outdir, 'licenses', `${name}@${meta.version}`);
  mkdirSync(target, { recursive: true });
  for (const f of files) copyFileSync(join(root, f), join(target, f));
  if (files.length === 0) {
    // a package that ships no licence file: say what its package.json declares
    writeFileSync(join(target, 'LICENSE.declared'), `${name}@${meta.version}: ${meta.license}\n`);
  }
  listed.push({ name, version: meta.version, license: meta.license ?? null, files: files.length ? files : ['LICENSE.declared'] });
}
writeFileSync(join(outdir, 'licenses', 'packages.json'), JSON.stringify(listed, null, 2) + '\n');
if (!existsSync(join(outdir, 'graphiql.css'))) throw new Error('no stylesheet was produced');
console.log(`${outdir}: ${listed.length} packages`);
