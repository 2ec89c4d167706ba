"""The public's open-data portal (docs/portal.md), beside the explorer page:

- `downloads` — whole datasets or a filter as CSV / JSON / JSON Lines / XLSX, streamed in keyset
  batches through the open tier's own executor (its field policies, its audit);
- `budget` — the explorer page's own rate budget, apart from the API allowance;
- `ckan` — the read part of the CKAN Action API, for harvesters and the `ckanapi` client;
- `dcat` — the catalogue as DCAT (Turtle, JSON-LD) with rdflib;
- `cors` — CORS per tier, by path prefix;
- `usage` — calls and downloads per open dataset and day, rolled up from the audit log;
  `stats` (the documents), `stats_http` and `stats_page` (`/stats`, its JSON twins), `cli`
  (`shuqiao portal stats`).
"""
