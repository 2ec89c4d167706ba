"""The open listing the harvester protocols (CKAN, DCAT) describe: exactly the datasets and fields of
the explorer's catalogue — itself read off the anonymous open schema (gateway.explorer.open_catalogue),
so nothing appears here that `/open/graphql` would not show — plus the catalogue's own dates and
the download and GraphQL addresses of each dataset."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text

from catalogue.spec import DatasetSpec, DepartmentSpec
from gateway.explorer import DOWNLOAD_FORMATS, ENDPOINT, open_catalogue
from gateway.registry import BuiltSchema
from gateway.state import GatewayState
from policies.model import SHARE_LABELS, Open, Tier

FORMAT_LABELS = {"csv": "CSV", "xlsx": "XLSX", "json": "JSON", "jsonl": "JSONL"}
MEDIA_TYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
    "jsonl": "application/jsonl",
}
CONDITIONAL_NOTE = (
    "有条件开放：数据仅提供给持有已批准开放申请的企业，请求时在 X-API-Key 请求头中携带 API Key。"
)


@dataclass(frozen=True)
class OpenDataset:
    spec: DatasetSpec
    department: DepartmentSpec
    entry: dict[str, Any]  # the explorer catalogue's entry (name, fields, labels…)
    created: datetime | None
    modified: datetime | None

    @property
    def code(self) -> str:
        return self.spec.code

    @property
    def conditional(self) -> bool:
        return self.spec.open is Open.CONDITIONAL

    @property
    def share_label(self) -> str:
        return SHARE_LABELS[self.spec.share]

    def keywords(self) -> list[str]:
        words = [self.spec.theme] if self.spec.theme else []
        words += [*self.spec.tags, self.entry["category"], self.department.name]
        return [w for w in dict.fromkeys(words) if w]

    def downloads(self, base: str) -> dict[str, str]:
        return {fmt: f"{base}/open/download/{self.code}.{fmt}" for fmt in DOWNLOAD_FORMATS}

    def page(self, base: str) -> str:
        return f"{base}/explore/datasets/{self.code}"

    def graphql(self, base: str) -> str:
        return base + ENDPOINT


_cache: weakref.WeakKeyDictionary[BuiltSchema, list[OpenDataset]] = weakref.WeakKeyDictionary()


async def open_listing(state: GatewayState) -> list[OpenDataset]:
    """The listing for the current catalogue (one computation per built anonymous open schema)."""
    registry = state.registry
    built = await registry.schema(Tier.OPEN)
    hit = _cache.get(built)
    if hit is not None:
        return hit
    catalogue = await registry.refresh()
    departments = {code: d.name for code, d in catalogue.departments.items()}
    entries = open_catalogue(built, departments, state.settings.limits.max_page_size)["datasets"]
    async with state.engine.connect() as conn:
        rows = await conn.execute(text("SELECT code, created_at, updated_at FROM dataset"))
        dates = {r[0]: (_dt(r[1]), _dt(r[2])) for r in rows}
    out = []
    for entry in entries:
        spec = catalogue.datasets[entry["code"]]
        dept = catalogue.departments.get(spec.department) or DepartmentSpec(spec.department, spec.department)
        created, modified = dates.get(spec.code, (None, None))
        out.append(OpenDataset(spec, dept, entry, created, modified))
    _cache[built] = out
    return out


def _dt(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def public_base(state: GatewayState) -> str:
    """Absolute addresses in harvested metadata use the gateway's public base URL (SHUQIAO_ISSUER)."""
    return state.settings.issuer.rstrip("/")
