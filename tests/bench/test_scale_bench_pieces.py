"""The scale bench's pieces work without servers or databases: its variables fit both stores,
its queries are valid against the demo schema, its report computes the ratios.
(The bench itself is `bench/scale_bench.py`; it is not part of the test suite.)"""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import date
from pathlib import Path
from types import ModuleType

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    sys.path.insert(0, str(BENCH_DIR))
    spec = importlib.util.spec_from_file_location("scale_bench", BENCH_DIR / "scale_bench.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_page_variant_has_a_full_page_in_the_small_store(bench: ModuleType) -> None:
    from gateway.demo.generate import SIZES

    pages = bench.page_variables()
    assert len(pages) == len({json.dumps(p, sort_keys=True) for p in pages}) >= 500
    small_first = bench.AS_OF.toordinal() - SIZES["small"].aqi_days + 1
    for p in pages:  # one row per city and day in the small store: 100 days before the bound
        assert date.fromisoformat(p["day"]).toordinal() - small_first + 1 >= bench.PAGE


def test_bodies_rotate_the_variables(bench: ModuleType) -> None:
    pages = bench.page_variables()
    lookups = bench.bodies("lookup", ["61010219900101001X", "610102199001010028"], pages)
    assert [json.loads(b)["variables"] for b in lookups] == [
        {"id": "61010219900101001X"},
        {"id": "610102199001010028"},
    ]
    plain, counted = (json.loads(bench.bodies(c, [], pages)[0])["query"] for c in ("page", "page+total"))
    assert "totalCount" not in plain and "totalCount" in counted
    assert plain.replace(" edges", " totalCount edges", 1) == counted


def test_the_queries_are_valid_against_the_share_schema(bench: ModuleType) -> None:
    from graphql import parse, validate

    from catalogue.service import Catalogue
    from gateway.demo.catalogue import demo_catalogue
    from policies.model import Tier
    from schema.build import build_tier_schema

    departments, datasets = demo_catalogue()
    catalogue = Catalogue(1, {d.code: d for d in departments}, {d.code: d for d in datasets})
    built = build_tier_schema(catalogue, Tier.SHARE, "hrss")  # the bench's caller
    for query in (bench.LOOKUP_Q, bench.PAGE_Q % (bench.PAGE, " totalCount")):
        assert validate(built.graphql, parse(query)) == []
