"""`shuqiao workbench …`: the workbench's twins on the command line — the example query of every
dataset a schema holds (the open schema, or a department's share schema), and the error codes."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from gateway.cli_support import emit, run_with_engine, settings
from gateway.workbench.errors import CODES, errors_document
from gateway.workbench.examples import examples_document
from gateway.workbench.pages import ENDPOINTS
from policies.model import Tier

workbench_app = typer.Typer(
    help="The query workbench (/graphiql): examples and error codes.", no_args_is_help=True
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]


@workbench_app.command("examples")
def examples_cmd(
    department: Annotated[
        str | None, typer.Option(help="A department's share schema (default: the anonymous open schema).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """One example query per dataset, as /graphiql/examples.json (or …/share/examples.json) gives."""
    from gateway.registry import SchemaRegistry

    tier = Tier.SHARE if department else Tier.OPEN

    async def job(engine: Any) -> dict[str, Any]:
        registry = SchemaRegistry(engine, settings().limits)
        if department and department not in (await registry.refresh()).departments:
            raise typer.BadParameter(f"no department {department!r}")
        return examples_document(await registry.schema(tier, department), ENDPOINTS[tier])

    doc = run_with_engine(job)
    human = "\n".join(f"# {e['rootField']} ({e['note']})\n{e['query']}" for e in doc["examples"])
    emit(as_json, doc, human or "no datasets in this schema")


@workbench_app.command("errors")
def errors_cmd(as_json: JsonOpt = False) -> None:
    """The extensions.code values of /open/graphql and /share/graphql, as /graphiql/errors.json."""
    human = "\n".join(f"{c.code:28s} {c.status}  {c.kind:8s} {c.zh}" for c in CODES)
    emit(as_json, errors_document(), human)
