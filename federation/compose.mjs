// Compose department subgraphs into a supergraph with @apollo/composition.
//
//   node compose.mjs samr=http://node/share/subgraphs/samr/graphql=samr.graphql ...   (name=url=file)
//   node compose.mjs < manifest.json    ([{"name", "url", "sdl"}, ...] on stdin)
//   node compose.mjs --out supergraph.graphql ...   (also write the supergraph, on success only)
//
// Prints one JSON object: {"errors": [...], "hints": [...], "supergraphSdl": "...",
// "apiSchema": <introspection of the API schema>}; exits 1 when composition fails, and then
// leaves --out untouched, so a failing composition never replaces a working supergraph (a
// router watching the file keeps serving the old one).
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { composeServices } from "@apollo/composition";
import { introspectionFromSchema, parse } from "graphql";

function readManifest(argv) {
  if (argv.length > 0) {
    return argv.map((arg) => {
      const first = arg.indexOf("=");
      const last = arg.lastIndexOf("=");
      if (first < 0 || last === first) throw new Error(`expected name=url=file, got ${arg}`);
      return {
        name: arg.slice(0, first),
        url: arg.slice(first + 1, last),
        sdl: readFileSync(arg.slice(last + 1), "utf8"),
      };
    });
  }
  return JSON.parse(readFileSync(0, "utf8"));
}

function describe(e) {
  return { message: e.message, code: e.extensions?.code ?? e.definition?.code ?? null };
}

let args = process.argv.slice(2);
let out = null;
const at = args.indexOf("--out");
if (at >= 0) {
  out = args[at + 1];
  args = [...args.slice(0, at), ...args.slice(at + 2)];
}
const services = readManifest(args).map((s) => ({
  name: s.name,
  url: s.url,
  typeDefs: parse(s.sdl),
}));
const result = composeServices(services);
if (result.errors) {
  process.stdout.write(JSON.stringify({ errors: result.errors.map(describe), hints: [] }) + "\n");
  process.exit(1);
}
const api = result.schema.toAPISchema().toGraphQLJSSchema();
if (out) {
  writeFileSync(`${out}.tmp`, result.supergraphSdl);
  renameSync(`${out}.tmp`, out); // atomic: a watcher never reads half a supergraph
}
process.stdout.write(
  JSON.stringify({
    errors: [],
    hints: result.hints.map((h) => ({ message: h.message, code: h.definition.code })),
    supergraphSdl: result.supergraphSdl,
    apiSchema: introspectionFromSchema(api).__schema,
  }) + "\n",
);
