"""`shuqiao data load` and `catalog show|list` as a newcomer types them: exit statuses, --json,
the rejects file beside the input, and the audit events in the store's own chain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from tests.loading.support import CHARGER_HEADER, Store, charger_rows, credit_code, write_csv
from tests.loading.test_load import count, query


@pytest.fixture
def cli(store: Store) -> Any:
    env = {
        "SHUQIAO_DATABASE_URL": store.url,
        "SHUQIAO_VAR_DIR": str(store.var_dir),
        "SHUQIAO_MASTER_KEY_FILE": str(store.var_dir / "master.key"),
        "SHUQIAO_AUDIT_STORE": "chain",
    }
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, list(args), env=env)

    return invoke


def test_load_show_and_list(cli: Any, store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "chargers.csv", CHARGER_HEADER, charger_rows(25))
    r = cli("data", "load", "charging_station", str(path), "--mode", "replace", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (out["loaded"], out["row_count"], out["mode"]) == (25, 25, "replace")
    shown = json.loads(cli("catalog", "show", "CITY-0001", "--json").stdout)
    assert shown["code"] == "charging_station" and shown["row_count"] == 25
    assert shown["last_load_digest"] == out["digest"] and shown["source"] is None
    listed = {d["code"]: d for d in json.loads(cli("catalog", "list", "--json").stdout)}
    assert listed["charging_station"]["row_count"] == 25 and listed["charging_station"]["last_load_at"]
    human = cli("data", "load", "charging_station", str(path), "--mode", "upsert", "--key", "station_id")
    assert human.exit_code == 0 and "25 updated" in human.stdout
    ops = [
        (op, status, principal)
        for op, status, principal in query(
            store,
            "SELECT operation_name, status, principal_id FROM audit_event "
            "WHERE operation_name LIKE 'data.load%' ORDER BY seq",
        )
    ]
    assert [o[:2] for o in ops if o[0] == "data.load"] == [("data.load", 200), ("data.load", 200)]
    assert all(p.startswith("cli") for _, _, p in ops)
    assert ("data.load.start" in {o[0] for o in ops}) == (store.backend == "sqlite")
    detail = query(
        store, "SELECT detail FROM audit_event WHERE operation_name = 'data.load' ORDER BY seq DESC"
    )[0][0]
    assert "S0000001" not in detail and '"updated":25' in detail


def test_refused_load_exit_status_and_rejects_file(cli: Any, store: Store, tmp_path: Path) -> None:
    before = count(store)
    rows = list(charger_rows(4, 900))
    rows[2][2] = credit_code(2)[:-1] + ("0" if credit_code(2)[-1] != "0" else "1")
    path = write_csv(tmp_path / "bad.csv", CHARGER_HEADER, rows)
    r = cli("data", "load", "charging_station", str(path))
    assert r.exit_code == 2
    assert "row 4, operator_credit_code" in r.stderr and "nothing was loaded" in r.stderr
    rejects = tmp_path / "bad.csv.rejects.csv"
    assert rejects.read_text(encoding="utf-8-sig").splitlines()[1].startswith("4,operator_credit_code,")
    assert count(store) == before
    r = cli("data", "load", "charging_station", str(path), "--json")
    assert r.exit_code == 2 and json.loads(r.stdout)["result"]["rejected"] == 1
    r = cli("data", "load", "no_such", str(path))
    assert r.exit_code == 2 and "no dataset 'no_such'" in r.stderr
    r = cli("data", "load", "charging_station", "--from-table", "t", "--source-url", "postgresql://u:pw@h/db")
    assert r.exit_code == 2 and "must not hold a password" in r.stderr and "pw" not in r.stdout
