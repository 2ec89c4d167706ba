# Shuqiao (数桥). Two commands matter: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean federation federation-demo graphiql graphiql-assets web-tests conformance

# The federation tests' Node packages (@apollo/composition, @apollo/gateway, @apollo/server),
# installed from the lockfile; reinstalled when the lockfile changes.
FEDERATION_STAMP := federation/node_modules/.package-lock.json
# axe-core for the portal pages' accessibility tests (tests/portal/test_pages_browser.py), from the
# lockfile; Playwright injects node_modules/axe-core/axe.min.js into the page (never a CDN).
WEB_TESTS_STAMP := tests/web/node_modules/.package-lock.json
# graphql-http, the GraphQL over HTTP reference audits tests/conformance runs, from its lockfile.
CONFORMANCE_STAMP := tests/conformance/node_modules/.package-lock.json

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

## run: the gateway on the embedded SQLite store with the demo data, at http://127.0.0.1:8000
run: $(STAMP)
	$(BIN)/shuqiao demo init
	$(BIN)/shuqiao serve

## test: lint, then the whole suite, on SQLite and PostgreSQL (127.0.0.1:5432 or SHUQIAO_TEST_POSTGRES_URL)
test: lint federation graphiql web-tests conformance
	$(BIN)/pytest

## federation: the Node packages tests/federation needs (Node >= 20), from federation/package-lock.json
federation: $(FEDERATION_STAMP)

## federation-demo: two nodes (the province's demo, 西安市) and a stock router in front (docs/federation.md)
federation-demo: $(STAMP) federation
	$(BIN)/shuqiao federation demo

$(FEDERATION_STAMP): federation/package.json federation/package-lock.json
	npm ci --prefix federation --ignore-scripts --no-audit --no-fund
	touch $(FEDERATION_STAMP)

## web-tests: axe-core for the accessibility checks of the portal pages, from tests/web/package-lock.json
web-tests: $(WEB_TESTS_STAMP)

$(WEB_TESTS_STAMP): tests/web/package.json tests/web/package-lock.json
	npm ci --prefix tests/web --ignore-scripts --no-audit --no-fund
	touch $(WEB_TESTS_STAMP)

# The query workbench's Node packages (GraphiQL, React, esbuild), installed from the lockfile. Their
# build is committed under gateway/static/graphiql/, so `make run` needs no Node; the tests rebuild
# it from the lockfile and compare byte for byte (tests/portal/test_graphiql_assets.py).
GRAPHIQL_STAMP := web/graphiql/node_modules/.package-lock.json

## graphiql: the workbench's Node packages (Node >= 20), from web/graphiql/package-lock.json
graphiql: $(GRAPHIQL_STAMP)

$(GRAPHIQL_STAMP): web/graphiql/package.json web/graphiql/package-lock.json
	npm ci --prefix web/graphiql --ignore-scripts --no-audit --no-fund
	touch $(GRAPHIQL_STAMP)

## graphiql-assets: rebuild gateway/static/graphiql/ (GraphiQL bundled, licences) from the lockfile; commit it
graphiql-assets: graphiql
	node web/graphiql/build.mjs

## conformance: the Node packages tests/conformance needs (graphql-http's audits), from its lockfile
conformance: $(CONFORMANCE_STAMP)

$(CONFORMANCE_STAMP): tests/conformance/package.json tests/conformance/package-lock.json
	npm ci --prefix tests/conformance --ignore-scripts --no-audit --no-fund
	touch $(CONFORMANCE_STAMP)

## lint: style, the one-way layering (import-linter contracts in pyproject.toml) and types (mypy)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

## bench: issue 18's figures: Shuqiao (open tier, share tier, open with log-only audit) vs PostGraphile 4
## on one PostgreSQL database (alternating rounds, ratios, CPU split), then lookups and pages at a
## province's scale and the audit store at 10,000,000 events (bench/README.md). Needs wrk (apt-get install -y wrk).
BENCH_PG_STAMP := bench/postgraphile/node_modules/.package-lock.json

# Issue 18's figures in one command at its own scale (an hour or more, ~30 GB of PostgreSQL data
# kept for reruns with --reuse); BENCH_SCALE=quick measures the same things at small sizes (~15 min).
BENCH_SCALE ?= full
ifeq ($(BENCH_SCALE),quick)
SCALE_ARGS := --rows 1000000
AUDIT_ARGS := --events 200000 --passes 1
else
SCALE_ARGS :=
AUDIT_ARGS := --events 10000000 --passes 1 --searches 40
endif

bench: $(STAMP) $(BENCH_PG_STAMP)
	$(BIN)/python bench/crypto_bench.py
	$(BIN)/python bench/run_gateway_bench.py
	PYTHONPATH=. $(BIN)/python bench/scale_bench.py $(SCALE_ARGS)
	PYTHONPATH=. $(BIN)/python bench/audit_scale_bench.py $(AUDIT_ARGS)

$(BENCH_PG_STAMP): bench/postgraphile/package.json bench/postgraphile/package-lock.json
	npm ci --prefix bench/postgraphile --no-audit --no-fund
	touch $(BENCH_PG_STAMP)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .import_linter_cache federation/node_modules web/graphiql/node_modules \
		tests/web/node_modules tests/conformance/node_modules bench/postgraphile/node_modules
