// A stock federation router for Shuqiao's department subgraphs: @apollo/gateway (query
// planning, entity joins) served by @apollo/server, over a supergraph composed by compose.mjs.
//
//   node router.mjs --supergraph supergraph.graphql --port 4000 [--timeout-ms 5000]
//                   [--name province-router] [--credentials forward|none] [--inject-token TOKEN]
//
// The router only plans and merges (docs/federation.md): by default it forwards the caller's
// own Authorization header to every subgraph and nothing else identifies the caller. Each
// subgraph fetch is abandoned after --timeout-ms; the rest of the answer is still served, with
// errors at the paths that subgraph would have filled. `--credentials none` and `--inject-token`
// exist only so the tests can show that a router without (or with the wrong) caller
// credentials gets nothing the caller may not read.
// The supergraph file is watched: a new composition replaces the old one without a restart;
// one that fails to load is refused and the working supergraph keeps serving.
import { readFileSync, watchFile } from "node:fs";
import { parseArgs } from "node:util";
import { ApolloGateway, RemoteGraphQLDataSource } from "@apollo/gateway";
import { ApolloServer } from "@apollo/server";
import { startStandaloneServer } from "@apollo/server/standalone";

const { values: opts } = parseArgs({
  options: {
    supergraph: { type: "string" },
    port: { type: "string", default: "4000" },
    host: { type: "string", default: "127.0.0.1" },
    "timeout-ms": { type: "string", default: "5000" },
    name: { type: "string", default: "shuqiao-router" },
    credentials: { type: "string", default: "forward" },
    "inject-token": { type: "string" },
  },
});
if (!opts.supergraph) throw new Error("--supergraph is required");
const timeoutMs = Number(opts["timeout-ms"]);

// Node's fetch, with a deadline per subgraph request: nothing waits past it.
const fetcher = (url, init) => fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });

class CallerDataSource extends RemoteGraphQLDataSource {
  willSendRequest({ request, context }) {
    const headers = request.http.headers;
    if (opts["inject-token"]) {
      headers.set("authorization", `Bearer ${opts["inject-token"]}`); // misconfigured: never do this
    } else if (opts.credentials === "forward" && context.authorization) {
      headers.set("authorization", context.authorization);
    }
    headers.set("x-shuqiao-router", opts.name); // a claim for the audit log, not a credential
    if (context.requestId) headers.set("x-request-id", context.requestId);
  }
}

const supergraphSdl = async ({ update }) => {
  let current = readFileSync(opts.supergraph, "utf8");
  watchFile(opts.supergraph, { interval: 500 }, () => {
    const next = readFileSync(opts.supergraph, "utf8");
    if (next === current) return;
    try {
      update(next); // @apollo/gateway validates it; on error the old supergraph keeps serving
      current = next;
      console.error(JSON.stringify({ event: "supergraph.updated" }));
    } catch (err) {
      console.error(JSON.stringify({ event: "supergraph.refused", message: String(err.message) }));
    }
  });
  return { supergraphSdl: current };
};

const gateway = new ApolloGateway({
  supergraphSdl,
  buildService: ({ url }) => new CallerDataSource({ url, fetcher }),
});
const server = new ApolloServer({ gateway, includeStacktraceInErrorResponses: false });
const { url } = await startStandaloneServer(server, {
  listen: { port: Number(opts.port), host: opts.host },
  context: async ({ req }) => ({
    authorization: req.headers.authorization,
    requestId: req.headers["x-request-id"],
  }),
});
console.error(JSON.stringify({ event: "router.ready", url }));
