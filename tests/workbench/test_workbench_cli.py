"""`shuqiao workbench examples|errors --json`: the same documents as the pages' JSON twins."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner


def _cli(demo_env: Any, *args: str) -> Any:
    from gateway.cli import app

    s = demo_env.settings
    env = {
        "SHUQIAO_DATABASE_URL": s.database_url,
        "SHUQIAO_VAR_DIR": str(s.var_dir),
        "SHUQIAO_MASTER_KEY_FILE": str(s.master_key_file),
    }
    return CliRunner().invoke(app, list(args), env=env)


def test_examples_match_the_twins(demo_env: Any, client: Any, tokens: dict[str, str]) -> None:
    r = _cli(demo_env, "workbench", "examples", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == client.get("/graphiql/examples.json").json()
    r = _cli(demo_env, "workbench", "examples", "--department", "hrss", "--json")
    assert r.exit_code == 0, r.output
    twin = client.get("/graphiql/share/examples.json", headers={"Authorization": f"Bearer {tokens['hrss']}"})
    assert json.loads(r.stdout) == twin.json()
    unknown = _cli(demo_env, "workbench", "examples", "--department", "nope")
    assert unknown.exit_code != 0 and "nope" in unknown.output


def test_errors_match_the_twin(demo_env: Any, client: Any) -> None:
    r = _cli(demo_env, "workbench", "errors", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == client.get("/graphiql/errors.json").json()
    human = _cli(demo_env, "workbench", "errors")
    assert "FORBIDDEN_FIELD" in human.stdout and "无权读取该字段" in human.stdout
