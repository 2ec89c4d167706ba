"""`shuqiao catalog apply|export|schema` through Typer's CliRunner: the errors of a bad file
(every one, with its line), the diff, --dry-run, destructive changes, the audit event, export
round-tripping."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from gateway.audit.models import AuditEvent
from tests.catalogue.conftest import EXAMPLE, catalogue_file, dataset_yaml, field_yaml, on_store


def runner(store: Any) -> Any:
    from typer.testing import CliRunner

    from gateway.cli import app

    s = store.settings
    env = {
        "SHUQIAO_DATABASE_URL": s.database_url,
        "SHUQIAO_VAR_DIR": str(s.var_dir),
        "SHUQIAO_MASTER_KEY_FILE": str(s.master_key_file),
    }
    return lambda *args, input=None: CliRunner().invoke(app, list(args), env=env, input=input)


def apply_events(store: Any) -> list[dict[str, Any]]:
    async def go(engine: Any) -> list[dict[str, Any]]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(AuditEvent.__table__)
                .where(AuditEvent.operation_name == "catalogue.apply")
                .order_by(AuditEvent.seq)  # type: ignore[arg-type]
            )
            return [dict(r._mapping) for r in rows]

    return on_store(store, go)


def detail(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(row["detail"])["reads"][0]["identity"]


def test_apply_the_example_dry_run_then_for_real(store: Any, tmp_path: Path) -> None:
    run = runner(store)
    dry = run("catalog", "apply", str(EXAMPLE), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "+ department xa_cgj" in dry.output and "+ dataset public_toilet" in dry.output
    assert "CREATE TABLE pool_public_toilet" in dry.output and "nothing applied" in dry.output
    assert apply_events(store) == []

    done = run("catalog", "apply", str(EXAMPLE), "--json")
    assert done.exit_code == 0, done.output
    out = json.loads(done.output)
    assert out["valid"] and out["applied"] and out["destructive"] == 0
    [event] = apply_events(store)
    assert event["principal_kind"] == "operator" and event["status"] == 200
    d = detail(event)
    assert d["target"] == "xa_cgj" and d["added"] == ["public_toilet"] and d["version"] == out["version"]
    assert d["file"] == str(EXAMPLE) and len(d["sha256"]) == 64

    again = run("catalog", "apply", str(EXAMPLE))
    assert again.exit_code == 0 and "no changes" in again.output
    assert len(apply_events(store)) == 1  # nothing applied, nothing to record

    exported = tmp_path / "exported.yaml"
    wrote = run("catalog", "export", "--output", str(exported), "--department", "xa_cgj")
    assert wrote.exit_code == 0, wrote.output
    assert "no changes" in run("catalog", "apply", str(exported)).output
    assert "public_toilet" in run("catalog", "export").output
    as_json = json.loads(run("catalog", "export", "--json", "--department", "xa_cgj").output)
    assert as_json["datasets"][0]["licence"] == "CC-BY-4.0"


def test_a_bad_file_lists_every_error_with_its_line(store: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace("level: L3", "level: L5", 1).replace("category: theme ", "category: 主题库 ")
    bad.write_text(text, encoding="utf-8")
    lines = text.split("\n")
    level_line = next(i for i, line in enumerate(lines) if "level: L5" in line) + 1
    result = runner(store)("catalog", "apply", str(bad))
    assert result.exit_code == 2
    assert f"{bad}:{level_line}:16: datasets[0].fields[11].level: level must be one of L1, L2, L3, L4" in (
        result.output
    )
    assert "category must be one of base (基础库), theme (主题库), special (专题库)" in result.output
    assert "2 error(s); nothing applied" in result.output
    as_json = json.loads(runner(store)("catalog", "apply", str(bad), "--json").output)
    assert [e["line"] for e in as_json["errors"]][1] == level_line and not as_json["valid"]


def test_destructive_needs_the_flag(store: Any, tmp_path: Path) -> None:
    run = runner(store)
    f = tmp_path / "c.yaml"
    f.write_text(
        catalogue_file("cli_d", dataset_yaml("cli_d", "cli_d_a", 1, field_yaml("a") + field_yaml("b")))
    )
    assert run("catalog", "apply", str(f)).exit_code == 0
    f.write_text(catalogue_file("cli_d", dataset_yaml("cli_d", "cli_d_a", 1, field_yaml("a"))))
    refused = run("catalog", "apply", str(f))
    assert refused.exit_code == 2
    assert "- field cli_d_a.b" in refused.output and "LOSES 0 values in column b" in refused.output
    assert "need --allow-destructive" in refused.output
    done = run("catalog", "apply", str(f), "--allow-destructive")
    assert done.exit_code == 0 and "applied 2 change(s)" in done.output


def test_stdin_and_schema(store: Any) -> None:
    run = runner(store)
    text = catalogue_file("cli_s", dataset_yaml("cli_s", "cli_s_a", 1, field_yaml("a")))
    assert run("catalog", "apply", "-", "--dry-run", input=text).exit_code == 0
    schema = json.loads(run("catalog", "schema").output)
    assert schema["title"] == "Shuqiao catalogue"


def test_a_field_made_sensitive_is_encrypted_at_once(store: Any, tmp_path: Path) -> None:
    from sqlalchemy import text

    run = runner(store)
    f = tmp_path / "p.yaml"
    f.write_text(catalogue_file("cli_p", dataset_yaml("cli_p", "cli_p_a", 1, field_yaml("phone"))))
    assert run("catalog", "apply", str(f)).exit_code == 0

    async def insert(engine: Any) -> None:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO pool_cli_p_a (phone) VALUES ('13912345678')"))

    on_store(store, insert)
    f.write_text(
        catalogue_file("cli_p", dataset_yaml("cli_p", "cli_p_a", 1, field_yaml("phone", level="L4")))
    )
    done = run("catalog", "apply", str(f))
    assert done.exit_code == 0, done.output
    assert "1 stored values must be encrypted" in done.output

    async def stored(engine: Any) -> list[Any]:
        async with engine.connect() as conn:
            return list((await conn.execute(text("SELECT phone, phone__bidx FROM pool_cli_p_a"))).all())

    [(phone, blind)] = on_store(store, stored)
    assert phone.startswith("sm4gcm:") and blind
