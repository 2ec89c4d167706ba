// Runs every server audit of graphql-http (the GraphQL over HTTP spec's reference audit suite)
// against one URL and prints the results as JSON:
//   {"requests": [request ids sent], "results": [{id, name, status, reason?, response?}]}
//   node audit.mjs --url http://127.0.0.1:8000/open/graphql [--header "Authorization: Bearer …"]…
//                  [--request-id PREFIX]   (each request then carries X-Request-ID: PREFIX-<n>)
// Used by tests/conformance/test_graphql_http_audits.py; docs/conformance.md says what it checks.
import { serverAudits } from 'graphql-http';

function parseArgs(argv) {
  const out = { url: null, headers: {}, requestId: null };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--url') out.url = argv[(i += 1)];
    else if (arg === '--header') {
      const raw = argv[(i += 1)];
      const at = raw.indexOf(':');
      if (at < 1) throw new Error(`--header takes "Name: value", not ${raw}`);
      out.headers[raw.slice(0, at).trim()] = raw.slice(at + 1).trim();
    } else if (arg === '--request-id') out.requestId = argv[(i += 1)];
    else throw new Error(`unknown argument ${arg}`);
  }
  if (!out.url) throw new Error('--url is required');
  return out;
}

const { url, headers, requestId } = parseArgs(process.argv.slice(2));
const sent = [];

// Every audit's request, with the caller's credentials added (the audit's own headers win).
function fetchWithHeaders(input, init = {}) {
  const merged = new Headers(headers);
  new Headers(init.headers || {}).forEach((value, name) => merged.set(name, value));
  if (requestId) {
    const id = `${requestId}-${sent.length}`;
    merged.set('x-request-id', id);
    sent.push(id);
  }
  return fetch(input, { ...init, headers: merged });
}

async function describe(response) {
  if (!response) return undefined;
  let body = await response.text().catch(() => '');
  if (body.length > 2000) body = `${body.slice(0, 2000)}…`;
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    body,
  };
}

const results = [];
for (const audit of serverAudits({ url, fetchFn: fetchWithHeaders })) {
  const result = await audit.fn();
  const entry = { id: audit.id, name: audit.name, status: result.status };
  if (result.status !== 'ok') {
    entry.reason = result.reason;
    entry.response = await describe(result.response);
  }
  results.push(entry);
}
process.stdout.write(`${JSON.stringify({ requests: sent, results }, null, 2)}\n`);
