"""A store of each backend with two small datasets of our own (not the demo's), and helpers."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catalogue.spec import DatasetSpec, DepartmentSpec, Entity, FieldSpec, FieldType
from gateway.identifiers import credit_code_check_char, id_number_check_digit
from policies.model import PI, Category, Level, MaskRule, Open, Share

CITY = DepartmentSpec("city", "市城市管理局", "City Administration")

CHARGERS = DatasetSpec(
    code="charging_station",
    resource_code="CITY-0001",
    name="充电桩",
    name_en="Charging stations",
    department="city",
    category=Category.THEME,
    share=Share.UNCONDITIONAL,
    open=Open.UNCONDITIONAL,
    fields=(
        FieldSpec("station_id", FieldType.STRING, "桩编号", nullable=False, indexed=True),
        FieldSpec("name", FieldType.STRING, "名称", nullable=False),
        FieldSpec(
            "operator_credit_code", FieldType.STRING, "运营商统一社会信用代码", references=Entity.LEGAL_ENTITY
        ),
        FieldSpec("power_kw", FieldType.DECIMAL, "功率（千瓦）"),
        FieldSpec("ports", FieldType.INTEGER, "枪数"),
        FieldSpec("opened_on", FieldType.DATE, "投运日期"),
        FieldSpec("updated_at", FieldType.DATETIME, "更新时间"),
        FieldSpec("public", FieldType.BOOLEAN, "对外开放"),
        FieldSpec("latitude", FieldType.FLOAT, "纬度"),
    ),
)

RESIDENTS = DatasetSpec(
    code="resident_card",
    resource_code="CITY-0002",
    name="居住证",
    name_en="Residence permits",
    department="city",
    category=Category.BASE,
    share=Share.CONDITIONAL,
    open=Open.NONE,
    entity=Entity.PERSON,
    entity_field="id_number",
    fields=(
        FieldSpec(
            "id_number",
            FieldType.STRING,
            "公民身份号码",
            level=Level.L4,
            pi=PI.SENSITIVE,
            mask=MaskRule.ID_NUMBER,
            nullable=False,
            indexed=True,
        ),
        FieldSpec(
            "name",
            FieldType.STRING,
            "姓名",
            level=Level.L3,
            pi=PI.PERSONAL,
            mask=MaskRule.NAME,
            nullable=False,
        ),
        FieldSpec("district", FieldType.STRING, "居住区县"),
        FieldSpec("issued_on", FieldType.DATE, "签发日期"),
    ),
)

CHARGER_HEADER = [
    "station_id",
    "name",
    "operator_credit_code",
    "power_kw",
    "ports",
    "opened_on",
    "updated_at",
    "public",
    "latitude",
]


def credit_code(n: int) -> str:
    first = f"91610113MA{n:07d}"
    return first + credit_code_check_char(first)


def id_number(n: int) -> str:
    first = f"61011319900101{n % 1000:03d}"
    first = first[:6] + f"{1950 + n % 50}0101" + f"{n % 1000:03d}"
    return first + id_number_check_digit(first)


def charger_rows(n: int, start: int = 0, name: str = "站") -> Iterator[list[Any]]:
    for i in range(start, start + n):
        yield [
            f"S{i:07d}",
            f"{name}{i}",
            credit_code(i % 97),
            f"{60 + i % 5}.50",
            str(2 + i % 3),
            "2023-05-01",
            "2024-01-02 08:30:00",
            "是" if i % 2 else "否",
            "34.25",
        ]


def write_csv(path: Path, header: list[str], rows: Any, encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@dataclass
class Store:
    backend: str
    url: str
    master_key: bytes
    var_dir: Path


def make_store(backend: str, tmp: Path) -> tuple[Store, Any]:
    from catalogue import service
    from gateway.db import create_engine
    from gateway.secrets import load_master_key
    from tests.conftest import create_database, init_store, settings_for

    url, drop = create_database(backend, tmp)
    settings = settings_for(url, tmp / "var")
    init_store(settings)

    async def setup() -> None:
        engine = create_engine(url)
        try:
            await service.save_department(engine, CITY)
            await service.save_dataset(engine, CHARGERS)
            await service.save_dataset(engine, RESIDENTS)
        finally:
            await engine.dispose()

    asyncio.run(setup())
    return Store(backend, url, load_master_key(settings.master_key_file), settings.var_dir), drop
