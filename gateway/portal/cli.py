"""`shuqiao portal stats`: the public statistics from the command line — the same documents as
`/stats.json` and `/stats/datasets/{code}.json` (gateway.portal.stats). It first rolls the usage
up through the newest audit event (gateway.portal.usage), so its figures are exact as of now."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from gateway.cli_support import emit, run_with_engine
from gateway.portal.stats import DEFAULT_DAYS, MAX_DAYS

portal_app = typer.Typer(help="The open-data portal: public usage statistics.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]


class NotOpen(LookupError):
    pass


@portal_app.command("stats")
def stats(
    days: Annotated[
        int, typer.Option(min=1, max=MAX_DAYS, help="The last N days, ending today (China time).")
    ] = DEFAULT_DAYS,
    dataset: Annotated[str | None, typer.Option(help="One open dataset (its code), per day.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Calls and downloads of the open datasets per dataset and day, the top datasets and the
    catalogue's growth; with --dataset, one dataset per day (zero-filled)."""
    from catalogue.service import load_catalogue
    from gateway.portal.stats import dataset_usage, public_datasets, publication_dates, usage_report
    from gateway.portal.usage import roll_up_pending

    async def job(engine: Any) -> dict[str, Any]:
        await roll_up_pending(engine)
        listing = public_datasets(await load_catalogue(engine), await publication_dates(engine))
        if dataset is None:
            return await usage_report(engine, listing, days)
        if dataset not in {d.code for d in listing}:
            raise NotOpen(f"no open dataset {dataset!r}")
        return await dataset_usage(engine, dataset, days)

    doc = run_with_engine(job, expected=(NotOpen,))
    emit(as_json, doc, _human(doc))


def _human(doc: dict[str, Any]) -> str:
    if "datasets" not in doc:  # one dataset
        lines = [f"{doc['dataset']}: date        calls  downloads"]
        lines += [f"  {d['date']}  {d['calls']:>7}  {d['downloads']:>9}" for d in doc["days"]]
        return "\n".join(lines)
    lines = [
        f"{doc['since']} – {doc['until']} ({doc['timezone']}): {doc['totals']['calls']} calls, "
        f"{doc['totals']['downloads']} downloads over {doc['catalogue']['open_datasets']} open datasets",
    ]
    lines += [
        f"  {d['resource_code']:20s} {d['dataset']:26s} {d['calls']:>7} calls {d['downloads']:>6} downloads "
        f"{d['active_days']:>3} days  {d['name']}"
        for d in doc["datasets"]
    ]
    return "\n".join(lines)
