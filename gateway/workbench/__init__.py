"""The query workbench (查询工作台, docs/portal.md §Query workbench): a self-hosted GraphiQL on
the open tier (`/graphiql`, anonymous or with an enterprise's API key) and on the share tier
(`/graphiql/share`, a person's token from the browser's own authorization-code + PKCE sign-in).

- `pages` — the pages, their assets (GraphiQL bundled under gateway/static/graphiql), the CSP;
- `examples` — one example query per dataset, read off the caller's own schema;
- `errors` — the `extensions.code` values the GraphQL endpoints answer, documented.
"""
