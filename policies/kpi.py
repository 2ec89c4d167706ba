"""The provincial plan's KPIs, computed from plain facts (no I/O: gateway.workflow.kpi gathers them).

Each KPI is a ratio with its numerator, denominator, definition and target, overall and per
department. Attribution is always to the department that can move the figure: the provider
(the dataset's department, or the department a demand or application is addressed to).

  编目率 cataloguing     published catalogue entries / the inventory: every dataset declared in
                         the catalogue (published or draft) plus every demand its provider has
                         promised (will_provide) and not yet fulfilled with a catalogued dataset
  归集率 collection      published datasets whose pool holds rows / published datasets
  数据共享率 sharing     share demands met / share demands: demands (需求清单) and share-tier
                         applications (申请) that were submitted; met = a fulfilled demand or an
                         approved application. Open and returned ones count as not (yet) met
  数据开放率 opening     open 信息项 / collected 信息项: fields that exist in the open view of a
                         collected dataset / all fields of collected datasets
  问题数据及时整改率     quality reports fixed by their deadline (3 working days, Chinese
                         calendar) / reports due: past their deadline or fixed, less those
                         disputed in time (a timely, reasoned dispute says the data is right:
                         there was nothing to 整改). A late dispute counts as not timely.

A ratio with a zero denominator has no value (None), never 0 % or 100 %."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

OVERALL = "*"  # the key of the overall figure beside the department codes


@dataclass(frozen=True, slots=True)
class DatasetFact:
    code: str
    department: str
    published: bool
    collected: bool  # its pool table holds rows (归集)
    fields: int  # 信息项
    open_fields: int  # 信息项 in the open view (0 when the dataset is 不予开放)


@dataclass(frozen=True, slots=True)
class DemandFact:
    requester: str
    provider: str
    state: str  # open | will_provide | cannot_provide | fulfilled


@dataclass(frozen=True, slots=True)
class ApplicationFact:
    consumer: str
    provider: str
    status: str  # submitted | approved | rejected | returned | ...; drafts are not facts


@dataclass(frozen=True, slots=True)
class QualityFact:
    provider: str
    state: str  # open | fixed | disputed
    deadline: datetime
    resolved_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    datasets: tuple[DatasetFact, ...] = ()
    demands: tuple[DemandFact, ...] = ()
    applications: tuple[ApplicationFact, ...] = ()
    quality: tuple[QualityFact, ...] = ()


@dataclass(frozen=True, slots=True)
class Ratio:
    numerator: int
    denominator: int

    @property
    def value(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None

    def __add__(self, other: Ratio) -> Ratio:
        return Ratio(self.numerator + other.numerator, self.denominator + other.denominator)


@dataclass(frozen=True, slots=True)
class KpiDefinition:
    key: str
    name: str  # zh
    name_en: str
    target: float
    definition: str  # zh first, then en
    numerator: str
    denominator: str


@dataclass(frozen=True, slots=True)
class Kpi:
    definition: KpiDefinition
    figures: dict[str, Ratio] = field(default_factory=dict)  # OVERALL and department codes

    @property
    def overall(self) -> Ratio:
        return self.figures.get(OVERALL, Ratio(0, 0))

    def met(self, scope: str = OVERALL) -> bool | None:
        value = self.figures.get(scope, Ratio(0, 0)).value
        return None if value is None else value >= self.definition.target


DEFINITIONS: tuple[KpiDefinition, ...] = (
    KpiDefinition(
        "cataloguing",
        "编目率",
        "cataloguing rate",
        1.0,
        "已编目（已发布）资源数 / 资源清单数（目录中登记的全部数据集，含未发布的，加上提供方已承诺提供、"
        "尚未编目的需求）。Published catalogue entries / the inventory: every dataset declared in the "
        "catalogue, published or draft, plus demands the provider promised and has not yet catalogued.",
        "published datasets",
        "datasets declared (incl. drafts) + promised, unfulfilled demands",
    ),
    KpiDefinition(
        "collection",
        "归集率",
        "collection rate",
        1.0,
        "已归集（数据池有数据）的已编目资源数 / 应归集资源数（已发布的数据集）。"
        "Published datasets whose pool holds rows / published datasets.",
        "published datasets with rows",
        "published datasets",
    ),
    KpiDefinition(
        "sharing",
        "数据共享率",
        "data sharing rate",
        0.99,
        "已满足的共享需求 / 共享需求（需求清单 + 共享申请）；满足 = 已批准的申请或已提供的需求。"
        "Share demands met / share demands (demands + submitted share-tier applications); met = an "
        "approved application or a fulfilled demand.",
        "approved applications + fulfilled demands",
        "submitted share-tier applications + demands",
    ),
    KpiDefinition(
        "opening",
        "数据开放率",
        "data opening rate",
        0.25,
        "开放信息项 / 已归集信息项（已归集数据集的全部字段）。Fields in the open view of collected "
        "datasets / all fields of collected datasets.",
        "open 信息项 of collected datasets",
        "信息项 of collected datasets",
    ),
    KpiDefinition(
        "quality_timeliness",
        "问题数据及时整改率",
        "timely correction rate",
        0.8,
        "3 个工作日（中国法定节假日及调休）内整改的问题数据 / 到期的问题数据（已过期限或已整改；"
        "期限内提出异议的不计）。Reports fixed within 3 working days (Chinese calendar) / reports due "
        "(past the deadline or fixed; those disputed in time excluded).",
        "reports fixed by their deadline",
        "reports past their deadline or fixed, less those disputed in time",
    ),
)
BY_KEY = {d.key: d for d in DEFINITIONS}


def _tally(items: Iterable[tuple[str, int, int]]) -> dict[str, Ratio]:
    """(department, numerator, denominator) contributions → per department and overall."""
    out: dict[str, Ratio] = {OVERALL: Ratio(0, 0)}
    for dept, num, den in items:
        part = Ratio(num, den)
        out[dept] = out.get(dept, Ratio(0, 0)) + part
        out[OVERALL] = out[OVERALL] + part
    return out


def cataloguing(facts: Facts) -> dict[str, Ratio]:
    return _tally(
        [(d.department, int(d.published), 1) for d in facts.datasets]
        + [(m.provider, 0, 1) for m in facts.demands if m.state == "will_provide"]
    )


def collection(facts: Facts) -> dict[str, Ratio]:
    return _tally((d.department, int(d.collected), 1) for d in facts.datasets if d.published)


def sharing(facts: Facts) -> dict[str, Ratio]:
    return _tally(
        [(m.provider, int(m.state == "fulfilled"), 1) for m in facts.demands]
        + [(a.provider, int(a.status == "approved"), 1) for a in facts.applications if a.status != "draft"]
    )


def opening(facts: Facts) -> dict[str, Ratio]:
    return _tally(
        (d.department, d.open_fields, d.fields) for d in facts.datasets if d.published and d.collected
    )


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def quality_timeliness(facts: Facts, now: datetime) -> dict[str, Ratio]:
    now = _utc(now)

    def counted(q: QualityFact) -> tuple[str, int, int] | None:
        deadline = _utc(q.deadline)
        in_time = q.resolved_at is not None and _utc(q.resolved_at) <= deadline
        if q.state == "disputed" and in_time:
            return None  # a timely dispute: nothing to correct
        if q.state == "fixed":
            return (q.provider, int(in_time), 1)
        if deadline < now:  # open or disputed late, and past due
            return (q.provider, 0, 1)
        return None  # open, not yet due

    return _tally(c for q in facts.quality if (c := counted(q)) is not None)


_COMPUTE: dict[str, Callable[[Facts, datetime], dict[str, Ratio]]] = {
    "cataloguing": lambda f, _now: cataloguing(f),
    "collection": lambda f, _now: collection(f),
    "sharing": lambda f, _now: sharing(f),
    "opening": lambda f, _now: opening(f),
    "quality_timeliness": quality_timeliness,
}


def compute(facts: Facts, now: datetime) -> list[Kpi]:
    """Every KPI, in the plan's order, overall and per department."""
    return [Kpi(d, _COMPUTE[d.key](facts, now)) for d in DEFINITIONS]
