"""The demo catalogue (DESIGN.md section 5): five Shaanxi provincial departments, six datasets,
declared in `catalogue.yaml` beside this module (the same file format as `shuqiao catalog apply`),
and the demo's principals and grants.

Field classifications follow the policy matrix (docs/policy.md); the generator in
`gateway.demo.generate` yields rows in exactly the field order the file declares.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.resources import files

from catalogue.document import parse, to_specs
from catalogue.spec import DatasetSpec, DepartmentSpec
from gateway.identifiers import credit_code_check_char, organization_code_check_char
from policies.model import Tier

CATALOGUE_FILE = files("gateway.demo").joinpath("catalogue.yaml")


def demo_document_text() -> str:
    return CATALOGUE_FILE.read_text(encoding="utf-8")


def _load() -> tuple[tuple[DepartmentSpec, ...], tuple[DatasetSpec, ...]]:
    departments, datasets = to_specs(parse(demo_document_text(), "gateway/demo/catalogue.yaml"))
    return tuple(departments), tuple(datasets)


DEPARTMENTS, DATASETS = _load()
_BY_CODE = {d.code: d for d in DATASETS}
ENTERPRISE_REGISTRATION = _BY_CODE["enterprise_registration"]
POPULATION = _BY_CODE["population"]

# The cities of the air-quality dataset (the generator's; the file's `city` description lists them).
AQI_CITIES: tuple[str, ...] = (
    "西安市",
    "宝鸡市",
    "咸阳市",
    "铜川市",
    "渭南市",
    "延安市",
    "榆林市",
    "汉中市",
    "安康市",
    "商洛市",
    "杨凌示范区",
)


def demo_catalogue() -> tuple[list[DepartmentSpec], list[DatasetSpec]]:
    """The demo's departments and datasets (fresh lists; the specs themselves are frozen)."""
    return list(DEPARTMENTS), list(DATASETS)


# ---- demo principals ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoEnterprise:
    code: str  # the enterprise's principal code (API keys belong to it)
    name: str
    credit_code: str


@dataclass(frozen=True, slots=True)
class DemoGrant:
    """An approved application, as the demo intends it; the gateway turns it into a GrantRecord."""

    tier: Tier
    dataset: str
    consumer: str  # department code (share tier) or enterprise code (open tier)
    fields: tuple[str, ...] = ()  # empty on the open tier: the whole open view
    clear_fields: tuple[str, ...] = ()
    purpose: str = ""
    expires_at: datetime | None = None


def _valid_credit_code(prefix8: str, org8: str) -> str:
    first17 = prefix8 + org8 + organization_code_check_char(org8)
    return first17 + credit_code_check_char(first17)


DEMO_ENTERPRISES: tuple[DemoEnterprise, ...] = (
    # 9 1 = enterprise registered by market regulation; 610000 = registered at provincial level.
    DemoEnterprise("demo-bank", "示例银行股份有限公司", _valid_credit_code("91610000", "MA6TDEM8")),
    # no grant: its user (credit-developer) applies for tax_credit_rating on /enterprise/apply
    DemoEnterprise("demo-credit", "示例征信服务有限公司", _valid_credit_code("91610000", "MA6TCRD3")),
)


def demo_grants(now: datetime | None = None) -> list[DemoGrant]:
    """The demo's approved grants, expiring one year after `now` (default: the current time).

    hrss may read population's id_number (encrypted to its SM2 key, being L4), name and
    birth_date in clear, for 社保待遇资格认证; samr deliberately has no grant on population
    (the demo of a denial); demo-bank may read tax_credit_rating's open view."""
    now = now or datetime.now(UTC)
    expires = now + timedelta(days=365)
    return [
        DemoGrant(
            tier=Tier.SHARE,
            dataset="population",
            consumer="hrss",
            fields=("id_number", "name", "birth_date"),
            clear_fields=("name", "birth_date"),
            purpose="社保待遇资格认证",
            expires_at=expires,
        ),
        DemoGrant(
            tier=Tier.OPEN,
            dataset="tax_credit_rating",
            consumer="demo-bank",
            purpose="小微企业信用贷款授信审查",
            expires_at=expires,
        ),
    ]
