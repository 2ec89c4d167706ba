// A stock federation router for Shuqiao's department subgraphs: @apollo/gateway (query
// planning, entity joins) served by @apollo/server, over a supergraph composed by compose.mjs.
//
//   node router.mjs --supergraph supergraph.graphql --port 4000 [--timeout-ms 5000]
//                   [--name province-router] [--credentials forward|none] [--inject-token TOKEN]
//                   [--header "Name: value" ...]   (static headers on every subgraph request)
//                   [--exchange CLIENT_ID:SECRET@TOKEN_URL]
//
// With --exchange the router is a registered client of the node's token endpoint: it trades
// each caller's token for a short delegated one (RFC 8693; `act` names the router) and sends
// that to the subgraphs, which then apply the caller's policies and record the router as the
// authenticated actor. A caller token that cannot be exchanged is not forwarded at all.
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
import { Kind, parse } from "graphql";

const { values: opts } = parseArgs({
  options: {
    supergraph: { type: "string" },
    port: { type: "string", default: "4000" },
    host: { type: "string", default: "127.0.0.1" },
    "timeout-ms": { type: "string", default: "5000" },
    name: { type: "string", default: "shuqiao-router" },
    credentials: { type: "string", default: "forward" },
    "inject-token": { type: "string" },
    header: { type: "string", multiple: true, default: [] },
    exchange: { type: "string" }, // CLIENT_ID:SECRET@TOKEN_URL (RFC 8693 token exchange)
  },
});
if (!opts.supergraph) throw new Error("--supergraph is required");
const timeoutMs = Number(opts["timeout-ms"]);

// Node's fetch, with a deadline per subgraph request: nothing waits past it.
const fetcher = (url, init) => fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });

// The fields a subgraph request would have filled, as paths in that request's response
// (`_entities` paths are mapped back to the client's paths by @apollo/gateway).
function missingPaths(query, variables) {
  const paths = [];
  const op = parse(query).definitions.find((d) => d.kind === Kind.OPERATION_DEFINITION);
  const name = (f) => (f.alias ?? f.name).value;
  const fieldsOf = (sel) =>
    (sel?.selections ?? []).flatMap((s) =>
      s.kind === Kind.FIELD ? (s.name.value === "__typename" ? [] : [s]) : fieldsOf(s.selectionSet),
    );
  for (const root of fieldsOf(op.selectionSet)) {
    if (root.name.value === "_entities") {
      const count = (variables?.representations ?? []).length;
      for (let i = 0; i < count; i++) {
        for (const f of fieldsOf(root.selectionSet)) paths.push([name(root), i, name(f)]);
      }
    } else {
      const inner = fieldsOf(root.selectionSet);
      if (inner.length === 0) paths.push([name(root)]);
      for (const f of inner) paths.push([name(root), name(f)]);
    }
  }
  return paths;
}

const exchanged = new Map(); // caller token -> {token, until}

async function delegated(authorization) {
  const caller = /^Bearer\s+(\S+)$/i.exec(authorization ?? "")?.[1];
  if (!caller) return null;
  const hit = exchanged.get(caller);
  if (hit && hit.until > Date.now()) return hit.token;
  const at = opts.exchange.lastIndexOf("@");
  const credentials = opts.exchange.slice(0, at);
  const colon = credentials.indexOf(":");
  const [id, secret] = [credentials.slice(0, colon), credentials.slice(colon + 1)];
  const response = await fetch(opts.exchange.slice(at + 1), {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      authorization: `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString("base64")}`,
    },
    body: new URLSearchParams({
      grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
      subject_token: caller,
      subject_token_type: "urn:ietf:params:oauth:token-type:access_token",
    }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!response.ok) return null;
  const body = await response.json();
  if (exchanged.size > 10000) exchanged.clear();
  exchanged.set(caller, { token: body.access_token, until: Date.now() + (body.expires_in - 30) * 1000 });
  return body.access_token;
}

class CallerDataSource extends RemoteGraphQLDataSource {
  constructor(config) {
    super(config);
    this.name = config.name;
  }

  // A subgraph that cannot be reached (refused, reset, past the deadline) is not an answer:
  // report it at every path it would have filled, and let the other subgraphs' data stand.
  async process(options) {
    try {
      return await super.process(options);
    } catch (err) {
      if (err?.extensions?.response) throw err; // an HTTP answer (401, 403…): the gateway reports it
      const { request } = options;
      const message = `The ${this.name} subgraph did not answer: ${err?.name === "TimeoutError" ? `no answer within ${timeoutMs} ms` : "unreachable"}.`;
      return {
        errors: missingPaths(request.query, request.variables).map((path) => ({
          message,
          path,
          extensions: { code: "SUBGRAPH_UNAVAILABLE", serviceName: this.name },
        })),
      };
    }
  }

  async willSendRequest({ request, context }) {
    const headers = request.http.headers;
    if (opts["inject-token"]) {
      headers.set("authorization", `Bearer ${opts["inject-token"]}`); // misconfigured: never do this
    } else if (opts.exchange) {
      const token = await delegated(context.authorization);
      if (token) headers.set("authorization", `Bearer ${token}`);
    } else if (opts.credentials === "forward" && context.authorization) {
      headers.set("authorization", context.authorization);
    }
    for (const h of opts.header) {
      const at = h.indexOf(":");
      headers.set(h.slice(0, at).trim(), h.slice(at + 1).trim());
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
  buildService: ({ name, url }) => new CallerDataSource({ name, url, fetcher }),
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
