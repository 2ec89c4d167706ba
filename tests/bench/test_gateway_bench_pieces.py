"""The gateway bench's pieces work without servers: its queries, wrk scripts and report.
(The bench itself is `make bench`; it is not part of the test suite.)"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "run_gateway_bench.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_gateway_bench", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_each_target_asks_its_own_fields(bench: ModuleType) -> None:
    args = type("Args", (), {"tax": True})()
    names = {t.name: t for kind in bench.SERVER_KINDS for t in bench.targets_of(kind, args)}
    assert {"shuqiao-share", "shuqiao-open", "shuqiao-tax", "open-log", "postgraphile"} <= set(names)
    assert "contactPhone" not in names["shuqiao-open"].fields
    assert names["open-log"].fields == names["shuqiao-open"].fields
    page, lookup, _ = bench.QUERIES[names["shuqiao-open"].shape]
    assert "contactPhone" not in page and "contactPhone" not in lookup
    bodies = bench.make_bodies("shuqiao-open", "lookup", ["A", "B"])
    assert [json.loads(b)["variables"] for b in bodies] == [{"code": "A"}, {"code": "B"}]


def test_wrk_script_rotates_the_bodies(bench: ModuleType, tmp_path: Path) -> None:
    case = bench.Case("shuqiao-open", "shuqiao", "lookup", 1, "http://x/open/graphql", {"A": "b"}, ["1", "2"])
    script = bench.write_lua(case, tmp_path).read_text()
    assert "[==[1]==]" in script and "[==[2]==]" in script and "WRKJSON" in script


def _case(bench: ModuleType, target: str, case: str, rps: float) -> Any:
    c = bench.Case(target, "k", case, 1, "u", {}, ["{}"])
    c.requests, c.duration_us, c.wall_s = int(rps * 3), 3_000_000, 3.0
    c.quantiles = [(1000, 1.0)]
    c.cpu.update({"server": 1.5, "postgres": 0.3, "wrk": 0.1, "other": 0.0, "steal": 0.0})
    return c


def test_report_gives_ratios_against_postgraphile_and_the_chain_cost(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        _case(bench, "shuqiao-open", "lookup", 900),
        _case(bench, "open-log", "lookup", 1000),
        _case(bench, "shuqiao-share", "lookup", 700),
        _case(bench, "postgraphile", "lookup", 1000),
    ]
    meta = {"when": "t", "enterprises": 1, "size": "small", "connections": 4, "warmup_s": 1}
    meta |= {"duration_s": 3, "rounds": 1, "shuqiao": "test"}
    result = bench.report(cases, meta)
    ratios = result["ratios"]
    assert ratios["shuqiao-open/lookup"]["vs_postgraphile"] == pytest.approx(0.9)
    assert ratios["shuqiao-open/lookup"]["meets_target"] is False
    assert ratios["shuqiao-share/lookup"]["meets_target"] is True
    assert ratios["chain-cost/lookup"]["cost"] == pytest.approx(0.1)
    server_us = result["results"][0]["cpu_us_per_request"]["server"]
    assert server_us == pytest.approx(1e6 * 1.5 / 2700, rel=1e-3)
    assert "chain cost" in capsys.readouterr().out


def test_row_check_allows_a_watermark_and_nothing_more(bench: ModuleType) -> None:
    from decimal import Decimal

    stored = {"registeredCapital": Decimal("200"), "registeredAddress": "咸宁路33号8层", "name": "宝鸡"}
    marked = {"registeredCapital": Decimal("199.99"), "registeredAddress": "咸宁路33号８层", "name": "宝鸡"}
    assert bench.same_rows([marked], [stored])
    for key, wrong in [
        ("registeredCapital", Decimal("199.98")),  # beyond the tolerance
        ("registeredAddress", "咸宁路34号8层"),  # another address, not another width
        ("name", "宝鸡市"),
    ]:
        assert not bench.same_rows([{**marked, key: wrong}], [stored]), key
    assert not bench.same_rows([marked], [stored, stored])
