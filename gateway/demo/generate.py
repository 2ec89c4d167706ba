"""Deterministic synthetic rows for the demo catalogue.

Same size and seed → the same rows, byte for byte, on any machine: every random stream is a
`random.Random` seeded from (seed, stream name), and nothing reads the clock — data are
generated "as of" AS_OF. Each dataset has its own stream, so generating one dataset does
not change another.

The datasets hang together the way real ones do:
- every ID number and credit code has valid check characters (and a real birth date and
  Shaanxi division code), and the sequence digit's parity matches the person's gender;
- every enterprise's legal representative is a person in `population` (name and ID number
  match), often with the same mobile number;
- every social-insurance row is a working-age person from `population`, employed by an
  enterprise from `enterprise_registration`;
- tax ratings and discharge permits cover subsets of the enterprises.

Speed: the expensive parts (check-digit partial sums, date objects, Decimal values, weighted
draws) are precomputed or drawn in bulk, so the per-row work is a few look-ups, cheap
`random()` calls and string joins: about 12 s of CPU for a million people, 30 s for all
2.6 million rows of the large size.
"""

from __future__ import annotations

import calendar
import math
import random
from bisect import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import cached_property
from itertools import accumulate
from operator import mul
from typing import Any, NamedTuple, TypeVar

from gateway.demo.catalogue import AQI_CITIES, DATASETS
from gateway.demo.regions import DISTRICTS, District
from gateway.identifiers import CREDIT_CODE_CHARSET

DEFAULT_SEED = 610000
AS_OF = date(2024, 12, 31)  # the demo's "today"


@dataclass(frozen=True, slots=True)
class Size:
    name: str
    people: int
    enterprises: int
    aqi_days: int


SIZES: dict[str, Size] = {
    "small": Size("small", people=5_000, enterprises=1_000, aqi_days=366),
    "large": Size("large", people=1_000_000, enterprises=200_000, aqi_days=3_653),
}

T = TypeVar("T")

FIELD_ORDER: dict[str, tuple[str, ...]] = {d.code: tuple(f.name for f in d.fields) for d in DATASETS}


def _words(text: str) -> list[str]:
    return text.split()


def _pairs(text: str) -> list[tuple[str, float]]:
    """'name weight name weight …' → [(name, weight), …]."""
    tokens = text.split()
    return [(tokens[i], float(tokens[i + 1])) for i in range(0, len(tokens), 2)]


class _Weighted(NamedTuple):
    values: list[Any]
    cum_weights: list[float]


def _weighted(pairs: list[tuple[Any, float]]) -> _Weighted:
    return _Weighted([v for v, _ in pairs], list(accumulate(w for _, w in pairs)))


# ---- people -------------------------------------------------------------------------------

# Surnames with rough national frequencies (% of the population), plus a few compound ones.
_SURNAMES = _weighted(
    _pairs("""
    王 7.2  李 7.1  张 6.8  刘 5.4  陈 4.5  杨 3.1  赵 2.3  黄 2.2  周 2.1  吴 2.0  徐 1.7  孙 1.5  胡 1.3
    朱 1.2  高 1.2  林 1.2  何 1.1  郭 1.1  马 1.1  罗 0.9  梁 0.9  宋 0.8  郑 0.8  谢 0.7  韩 0.7  唐 0.7
    冯 0.7  于 0.6  董 0.6  萧 0.6  程 0.6  曹 0.6  袁 0.5  邓 0.5  许 0.5  傅 0.5  沈 0.4  曾 0.4  彭 0.4
    吕 0.4  苏 0.4  卢 0.4  蒋 0.4  蔡 0.4  贾 0.4  丁 0.4  魏 0.4  薛 0.3  叶 0.3  阎 0.3  余 0.3  潘 0.3
    杜 0.3  戴 0.3  夏 0.3  钟 0.3  汪 0.3  田 0.3  任 0.3  姜 0.3  范 0.3  方 0.3  石 0.3  姚 0.3  谭 0.3
    廖 0.3  邹 0.3  熊 0.3  金 0.2  陆 0.2  郝 0.2  孔 0.2  白 0.2  崔 0.2  康 0.2  毛 0.2  邱 0.2  秦 0.2
    江 0.2  史 0.2  顾 0.2  侯 0.2  邵 0.2  孟 0.2  龙 0.2  万 0.2  段 0.2  雷 0.2  钱 0.2  汤 0.2  尹 0.2
    黎 0.2  易 0.2  常 0.2  武 0.2  乔 0.2  贺 0.2  赖 0.2  龚 0.2  文 0.2
    欧阳 0.05  司马 0.04  上官 0.02  诸葛 0.02  东方 0.01  令狐 0.01
    """)
)

# Given-name characters by birth cohort and gender: names follow fashions.
_GIVEN: dict[tuple[int, bool], str] = {
    (0, True): "建国军明华伟强平志勇德福林海忠新民生文成春荣光俊宝安贵东山全发顺兴",
    (0, False): "秀英兰芳桂珍玉凤霞梅琴华淑翠萍云彩莲娥菊花荣春秀美丽红金巧爱香",
    (1, True): "伟军斌涛磊鹏勇杰刚辉波峰宁超亮锋浩飞鑫龙健斌晓东明强俊毅振永华",
    (1, False): "丽娟燕敏静艳红霞芳玲琳洁莉萍婷雪慧颖晶倩娜蓉琴英虹菲佳晓瑞妮",
    (2, True): "浩宇轩子豪博俊晨杰睿涵航泽铭一宸辰昊然天佑嘉奕阳瑞鑫凯文翔皓",
    (2, False): "欣怡雨涵梓萱佳琪思婷诗雅语嘉可馨一诺梦瑶悦彤子晨若依紫艺蕊然",
}
_ETHNICITIES = _weighted(
    _pairs("汉族 99.4  回族 0.45  满族 0.05  蒙古族 0.03  壮族 0.02  土家族 0.02  藏族 0.01  苗族 0.01")
)

# Real mainland mobile prefixes (China Mobile, Unicom, Telecom, Broadnet).
_MOBILE_PREFIXES = _words(
    "134 135 136 137 138 139 147 150 151 152 157 158 159 172 178 182 183 184 187 188 195 197 198 "
    "130 131 132 145 155 156 166 171 175 176 185 186 196 133 149 153 173 177 180 181 189 190 191 193 199 192"
)

_ROADS = _words("""
    人民路 解放路 建设路 中山路 文化路 新华路 东风路 胜利路 和平路 团结路 光明路 幸福路 朝阳路 育才路
    学府路 科技路 创业路 工业路 迎宾大道 滨河路 长安路 北大街 南大街 东大街 西大街 府前街 新民街 公园路
    车站路 青年路 体育路 民主路 红旗路 劳动路 友谊路 振兴路 兴业路 世纪大道 开发大道 金融路 凤凰路 龙首路
    太白路 秦岭路 渭滨路 汉江路 丝路大道 未央路 高新路 锦业路 唐延路 含光路 朱雀大街 雁塔路 长乐路 咸宁路
    电子正街 小寨东路 凤城八路 西影路 沣惠路 文景路 明光路 建工路
""")
_TOWN_STEMS = _words(
    "城关 东关 西关 南关 北关 新街 马嵬 大王 杨家 李家 张家 王家 柳林 桥头 石门 河口 龙门 双庙 五里 十里 "
    "老庄 新庄 高桥 长宁 永乐 太平 安乐 兴隆 金川 庙湾 官道 寺前 店头 关山 红岩 青山 白鹿 云台 瓦窑 渭河"
)
_VILLAGE_STEMS = _words(
    "东 西 南 北 前 后 上 下 新 老 大 小 王 李 张 刘 杨 赵 马 高 孙 郭 何 胡 陈 韩 唐 冯 董 程 曹 袁 许 "
    "柳 槐 杏 枣 桃 梨 石 河 沟 坡 塬 湾 庄 堡 寨 营 坊"
)


def _iaqi(c: float, breaks: tuple[float, ...], indexes: tuple[int, ...]) -> float:
    """HJ 633-2012 individual AQI by linear interpolation between breakpoints."""
    if c <= 0:
        return 0.0
    for i in range(1, len(breaks)):
        if c <= breaks[i]:
            lo, hi = breaks[i - 1], breaks[i]
            return indexes[i - 1] + (indexes[i] - indexes[i - 1]) * (c - lo) / (hi - lo)
    return float(indexes[-1])


_PM25_BREAKS = ((0, 35, 75, 115, 150, 250, 350, 500), (0, 50, 100, 150, 200, 300, 400, 500))
_PM10_BREAKS = ((0, 50, 150, 250, 350, 420, 500, 600), (0, 50, 100, 150, 200, 300, 400, 500))
_O3_8H_BREAKS = ((0, 100, 160, 215, 265, 800), (0, 50, 100, 150, 200, 300))
_AQI_LEVELS = ((50, "优"), (100, "良"), (150, "轻度污染"), (200, "中度污染"), (300, "重度污染"))

# Annual mean PM2.5 (μg/m³) per city: the Guanzhong basin is worst, the Qinling south cleanest.
_CITY_PM25 = {
    "西安市": 46,
    "宝鸡市": 40,
    "咸阳市": 48,
    "铜川市": 38,
    "渭南市": 45,
    "延安市": 30,
    "榆林市": 29,
    "汉中市": 36,
    "安康市": 30,
    "商洛市": 28,
    "杨凌示范区": 42,
}
_DISTRICTS = _weighted([(d, float(d.population)) for d in DISTRICTS])
_DUSTY = {"榆林市", "延安市"}  # spring dust from the Mu Us desert raises PM10

# ---- enterprises --------------------------------------------------------------------------

# GB/T 4754-2017 门类 with rough shares of Shaanxi's enterprises, and words for names.
_INDUSTRIES = [
    ("批发和零售业", 28, "商贸 贸易 商贸发展 供应链管理 医药销售 建材销售 农产品销售 电子商务"),
    ("租赁和商务服务业", 12, "企业管理咨询 商务信息咨询 人力资源服务 广告 会展服务 物业管理"),
    ("科学研究和技术服务业", 8, "科技 技术开发 检测技术 工程设计 环保科技 生物科技 新材料科技"),
    ("制造业", 10, "机械制造 电子科技 新材料 食品 化工 汽车零部件 服饰 包装材料 精密仪器 医药"),
    ("建筑业", 9, "建筑工程 建设工程 装饰工程 市政工程 园林绿化工程 劳务"),
    ("信息传输、软件和信息技术服务业", 7, "信息技术 软件 网络科技 数据科技 智能科技 通信技术"),
    ("住宿和餐饮业", 5, "餐饮管理 酒店管理 餐饮 饮食文化"),
    ("农、林、牧、渔业", 4, "农业科技 农业开发 果业 畜牧 种植专业 苗木"),
    ("居民服务、修理和其他服务业", 4, "家政服务 汽车服务 维修服务 洗涤服务"),
    ("交通运输、仓储和邮政业", 3, "物流 运输 仓储 货运代理"),
    ("房地产业", 3, "房地产开发 置业 房地产经纪"),
    ("文化、体育和娱乐业", 2, "文化传媒 影视文化 体育文化 文化旅游"),
    ("电力、热力、燃气及水生产和供应业", 1.5, "能源 新能源 热力 燃气 水务 光伏电力"),
    ("采矿业", 1.5, "矿业 煤业 能源开发 石油技术服务"),
    ("教育", 1, "教育科技 培训 文化艺术培训"),
    ("卫生和社会工作", 1, "医疗管理 健康管理 诊所 养老服务"),
]
_INDUSTRIES_W = _weighted([(name, w) for name, w, _ in _INDUSTRIES])
_INDUSTRY_WORDS = {name: words.split() for name, _, words in _INDUSTRIES}

_ENTERPRISE_TYPES = _weighted(
    [
        ("有限责任公司（自然人投资或控股）", 55),
        ("有限责任公司（自然人独资）", 18),
        ("有限责任公司（法人独资）", 7),
        ("股份有限公司（非上市、自然人投资或控股）", 5),
        ("有限责任公司（国有独资）", 2),
        ("个人独资企业", 8),
        ("有限合伙企业", 5),
    ]
)
_BRAND_CHARS = (
    "秦汉唐华岳长安丝路鼎盛恒通瑞丰金诺博远泰和嘉宏信达正弘天成宇晟新航聚源中科创泽润德隆顺昌永兴盈佳美"
    "卓越凯旭明辉安邦锦程同力宏业利民惠康众合乾坤开元汇通益众华信荣达"
)
_STATUSES = _weighted([("存续", 88), ("注销", 7), ("吊销", 4), ("迁出", 1)])
# Registered capital in 万元: round figures, most between 50 and 1,000.
_CAPITALS = _weighted(
    [
        (Decimal(v), w)
        for v, w in _pairs(
            "3 2  10 8  30 6  50 12  100 20  200 10  300 8  500 12  800 3  1000 9  2000 4  3000 2  "
            "5000 2  10000 1.5  50000 0.4"
        )
    ]
)

# Industries that need a discharge permit, the permit registry's finer industry, and pollutants.
_PERMIT_INDUSTRIES = {
    "制造业": [
        "通用设备制造业",
        "汽车制造业",
        "化学原料和化学制品制造业",
        "水泥、石灰和石膏制造",
        "农副食品加工业",
        "酒、饮料和精制茶制造业",
        "计算机、通信和其他电子设备制造业",
        "医药制造业",
        "金属制品业",
    ],
    "采矿业": ["煤炭开采和洗选业", "石油和天然气开采业"],
    "电力、热力、燃气及水生产和供应业": ["火力发电", "热力生产和供应", "污水处理及其再生利用"],
    "卫生和社会工作": ["医院"],
}
_POLLUTANTS = _weighted([("废气、废水", 45), ("废气", 30), ("废水", 15), ("废气、废水、固体废物", 10)])

_RATINGS = _weighted([("A", 20), ("B", 55), ("M", 12), ("C", 8), ("D", 5)])
_RATING_YEARS = (AS_OF.year - 3, AS_OF.year - 2, AS_OF.year - 1)  # published each April for the year before

_INSURANCE_TYPES = ("企业职工基本养老保险", "失业保险", "工伤保险")
# Contribution base bounds, yuan/month: about 60% and 300% of Shaanxi's average wage.
_BASE_MIN, _BASE_MAX = 4_077, 20_385


@dataclass(slots=True)
class _People:
    ids: list[str]
    names: list[str]
    male: bytearray
    birth: list[date]
    district: list[District]
    phone: list[str | None]


@dataclass(slots=True)
class _Enterprises:
    credit: list[str]
    names: list[str]
    rep: list[int]  # index into people
    district: list[District]
    industry: list[str]
    founded: list[date]
    status: list[str]
    capital: list[Decimal]
    kind: list[str]


def _weighted_sum(digits: str, weights: list[int]) -> int:
    return sum(int(c) * w for c, w in zip(digits, weights, strict=True))


# Check characters of generated credit codes, computed inline with map/sum: the identifiers
# module's validating functions cost ~15 µs a code, which was most of the enterprise
# generator's time. The unit tests check every generated code with gateway.identifiers.
_CREDIT_VALUE = {c: i for i, c in enumerate(CREDIT_CODE_CHARSET)}
_CREDIT_WEIGHTS = [pow(3, i, 31) for i in range(17)]
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_VALUE = {c: int(c, 36) for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
_ORG_BODY_CHARS = CREDIT_CODE_CHARSET  # an organisation code inside a credit code uses its charset
_N_ORG_BODY_CHARS = len(_ORG_BODY_CHARS)


def _new_credit_code(rand: Callable[[], float], region: str, new_style: bool) -> str:
    """A credit code 91 + region + organisation code (with its GB 11714 check) + MOD 31 check.

    New-style organisation codes (since the 2015 reform) start with "MA6" and carry letters;
    older ones are eight digits."""
    if new_style:
        body = "MA6" + "".join([_ORG_BODY_CHARS[int(rand() * _N_ORG_BODY_CHARS)] for _ in range(5)])
    else:
        body = str(10_000_000 + int(rand() * 90_000_000))
    check = 11 - sum(map(mul, map(_ORG_VALUE.__getitem__, body), _ORG_WEIGHTS)) % 11
    first17 = "91" + region + body + ("X" if check == 10 else "0" if check == 11 else str(check))
    total = sum(map(mul, map(_CREDIT_VALUE.__getitem__, first17), _CREDIT_WEIGHTS))
    return first17 + CREDIT_CODE_CHARSET[(31 - total % 31) % 31]


def _birth_year_weight(year: int) -> float:
    """Relative births per year among today's residents: few of the very old, the 1959-61 famine
    dip, the baby booms of the 1960s-80s, fewer births after 2000."""
    if year < 1950:
        return 0.4
    if year < 1959:
        return 0.9
    if year < 1962:
        return 0.6
    if year < 1976:
        return 1.4
    if year < 1991:
        return 1.3
    if year < 2000:
        return 1.1
    return 0.9


def _name_suffix(kind: str) -> str:
    if kind == "个人独资企业":
        return "中心"
    if kind == "有限合伙企业":
        return "中心（有限合伙）"
    if kind.startswith("股份"):
        return "股份有限公司"
    return "有限公司"


class _Rng(random.Random):
    """random.Random plus cheap draws: `choice`/`randrange` go through _randbelow in Python,
    which at millions of calls is most of the generator's time; one `random()` is a C call.
    (The tiny bias of int(random() * n) is irrelevant for synthetic data.)"""

    def pick(self, seq: Sequence[T]) -> T:
        return seq[int(self.random() * len(seq))]

    def below(self, n: int) -> int:
        return int(self.random() * n)

    def draw(self, table: _Weighted, k: int) -> list[Any]:
        """k weighted draws (note: `choices`' second positional argument is *relative* weights)."""
        return self.choices(table.values, cum_weights=table.cum_weights, k=k)

    def draw1(self, table: _Weighted) -> Any:
        return self.choices(table.values, cum_weights=table.cum_weights)[0]

    def between(self, lo: int, hi: int) -> int:
        """lo <= result < hi."""
        return lo + int(self.random() * (hi - lo))


class DemoGenerator:
    """Rows for every demo dataset, as tuples in the catalogue's field order.

    `rows(code)` can be called any number of times, in any order, and yields the same rows."""

    def __init__(self, size: str | Size = "small", seed: int = DEFAULT_SEED) -> None:
        self.size = SIZES[size] if isinstance(size, str) else size
        self.seed = seed
        first = date(1940, 1, 1).toordinal()
        # One shared date object per day in range: cheaper than building millions of them.
        last = date(AS_OF.year + 6, 12, 31).toordinal()  # permits run up to five years ahead
        self._dates = [date.fromordinal(o) for o in range(first, last + 1)]
        self._first_ordinal = first

    # -- public ---------------------------------------------------------------------------

    def columns(self, dataset: str) -> tuple[str, ...]:
        return FIELD_ORDER[dataset]

    def count(self, dataset: str) -> int:
        if dataset == "population":
            return self.size.people
        if dataset == "enterprise_registration":
            return self.size.enterprises
        if dataset == "air_quality_daily":
            return self.size.aqi_days * len(AQI_CITIES)
        if dataset == "tax_credit_rating":
            return len(self._tax_plan)
        if dataset == "discharge_permit":
            return len(self._permit_plan)
        if dataset == "social_insurance":
            return sum(len(types) for _, _, _, _, types in self._insurance_plan)
        raise KeyError(dataset)

    def rows(self, dataset: str) -> Iterator[tuple[Any, ...]]:
        producers = {
            "population": self._population_rows,
            "enterprise_registration": self._enterprise_rows,
            "tax_credit_rating": self._tax_rows,
            "discharge_permit": self._permit_rows,
            "air_quality_daily": self._aqi_rows,
            "social_insurance": self._insurance_rows,
        }
        return producers[dataset]()

    def prepare(self, dataset: str) -> None:
        """Build the shared structures a dataset's rows draw on (optional: `rows` builds them
        lazily; the loader calls this first so its progress bar measures loading alone)."""
        needs = {
            "population": ("_people",),
            "enterprise_registration": ("_people", "_enterprises"),
            "tax_credit_rating": ("_tax_plan",),
            "discharge_permit": ("_permit_plan",),
            "social_insurance": ("_insurance_plan",),
        }
        for attribute in needs.get(dataset, ()):
            getattr(self, attribute)

    def dicts(self, dataset: str) -> Iterator[dict[str, Any]]:
        names = FIELD_ORDER[dataset]
        for row in self.rows(dataset):
            yield dict(zip(names, row, strict=True))

    # -- helpers --------------------------------------------------------------------------

    def _rng(self, stream: str) -> _Rng:
        # str seeds go through SHA-512, so this is stable across processes and platforms.
        return _Rng(f"{self.seed}/{self.size.name}/{stream}")

    def _day(self, d: date) -> date:
        return self._dates[d.toordinal() - self._first_ordinal]

    @staticmethod
    def _mobile(rng: _Rng) -> str:
        return f"{rng.pick(_MOBILE_PREFIXES)}{rng.below(100_000_000):08d}"

    @staticmethod
    def _address(rng: _Rng, d: District, *, home: bool) -> str:
        head = f"陕西省{d.city.name}{d.name}"
        if d.urban or rng.random() < 0.5:
            road = rng.pick(_ROADS)
            number = rng.between(1, 400)
            if not home:
                return f"{head}{road}{number}号" + (
                    f"{rng.between(1, 30)}层{rng.between(1, 30):02d}室" if rng.random() < 0.5 else ""
                )
            return (
                f"{head}{road}{number}号{rng.between(1, 20)}号楼{rng.between(1, 6)}单元"
                f"{rng.between(1, 33)}{rng.between(1, 7):02d}室"
            )
        town = rng.pick(_TOWN_STEMS)
        village = rng.pick(_VILLAGE_STEMS) + rng.pick(_VILLAGE_STEMS)
        return f"{head}{town}镇{village}村{rng.between(1, 13)}组{rng.between(1, 120)}号"

    # -- people ---------------------------------------------------------------------------

    @cached_property
    def _people(self) -> _People:
        rng = self._rng("people")
        rand = rng.random
        n = self.size.people
        # MOD 11-2 partial sums, precomputed: region (weights 1-6), birth date (7-14), sequence (15-17).
        w = [pow(2, 17 - i, 11) for i in range(17)]
        region_sum = {d.code: _weighted_sum(d.code, w[:6]) for d in DISTRICTS}
        seq_str = [f"{s:03d}" for s in range(1000)]
        seq_sum = [_weighted_sum(s, w[14:]) for s in seq_str]
        check = "10X98765432"
        date_str = [d.strftime("%Y%m%d") for d in self._dates]
        date_sum = [_weighted_sum(ds, w[6:14]) for ds in date_str]

        years = list(range(1940, 2009))
        year_start = {y: date(y, 1, 1).toordinal() - self._first_ordinal for y in years}
        year_len = {y: 366 if calendar.isleap(y) else 365 for y in years}
        picked_districts = rng.draw(_DISTRICTS, n)
        picked_years = rng.draw(_weighted([(y, _birth_year_weight(y)) for y in years]), n)
        picked_surnames = rng.draw(_SURNAMES, n)
        prefixes, n_prefixes = _MOBILE_PREFIXES, len(_MOBILE_PREFIXES)
        youngest_with_phone = AS_OF.year - 12

        ids: list[str] = []
        names: list[str] = []
        male = bytearray(n)
        birth: list[date] = []
        phones: list[str | None] = []
        seen: set[str] = set()
        # Locals: this loop runs a million times in the large demo.
        dates, given_chars, add_id, add_name, add_birth, add_phone = (
            self._dates,
            _GIVEN,
            ids.append,
            names.append,
            birth.append,
            phones.append,
        )
        for i in range(n):
            code = picked_districts[i].code
            y = picked_years[i]
            is_male = rand() < 0.512
            day = year_start[y] + int(rand() * year_len[y])
            head = code + date_str[day]
            partial = region_sum[code] + date_sum[day]
            while True:  # collisions are rare (~1 in 10^4 at a million people): redraw the sequence
                seq = int(rand() * 500) * 2 + is_male  # odd for men, even for women
                id_number = head + seq_str[seq] + check[(partial + seq_sum[seq]) % 11]
                if id_number not in seen:
                    break
            seen.add(id_number)
            chars = given_chars[0 if y < 1970 else 1 if y < 1990 else 2, is_male]
            k = len(chars)
            given = chars[int(rand() * k)]
            if rand() < 0.7:  # most given names have two characters
                given += chars[int(rand() * k)]
            add_id(id_number)
            add_name(picked_surnames[i] + given)
            male[i] = is_male
            add_birth(dates[day])
            if y > youngest_with_phone or rand() < 0.03:
                add_phone(None)
            else:
                add_phone(prefixes[int(rand() * n_prefixes)] + str(10**8 + int(rand() * 10**8))[1:])
        return _People(ids, names, male, birth, picked_districts, phones)

    def _population_rows(self) -> Iterator[tuple[Any, ...]]:
        p = self._people
        rng = self._rng("population")
        picked_ethnicities = rng.draw(_ETHNICITIES, len(p.ids))
        address = self._address
        for i in range(len(p.ids)):
            d = p.district[i]
            yield (
                p.ids[i],
                p.names[i],
                "男" if p.male[i] else "女",
                p.birth[i],
                picked_ethnicities[i],
                address(rng, d, home=True),
                p.phone[i],
                d.code,
                d.name,
            )

    # -- enterprises ----------------------------------------------------------------------

    @cached_property
    def _enterprises(self) -> _Enterprises:
        rng = self._rng("enterprises")
        rand = rng.random
        people = self._people
        m = self.size.enterprises
        # Legal representatives: adults born by 1999 (at least 20 when the enterprise was founded).
        adults = [i for i, b in enumerate(people.birth) if b.year <= 1999]
        if not adults:
            raise ValueError("the demo needs adults in population to act as legal representatives")
        founded_years = list(range(1992, AS_OF.year + 1))
        # Registrations have grown year on year since the 2014 commercial-registration reform.
        picked_districts = rng.draw(_DISTRICTS, m)
        picked_industries = rng.draw(_INDUSTRIES_W, m)
        picked_years = rng.draw(
            _weighted([(y, 1.0 if y < 2014 else 2.5 + (y - 2014) * 0.3) for y in founded_years]), m
        )
        picked_kinds = rng.draw(_ENTERPRISE_TYPES, m)
        e = _Enterprises(
            credit=[],
            names=[],
            rep=[],
            district=picked_districts,
            industry=picked_industries,
            founded=[],
            status=rng.draw(_STATUSES, m),
            capital=rng.draw(_CAPITALS, m),
            kind=picked_kinds,
        )
        seen_codes: set[str] = set()
        seen_names: set[str] = set()
        reform = date(2015, 10, 1)  # new-style "MA…" organisation codes since the credit-code reform
        for i in range(m):
            d = picked_districts[i]
            rep = adults[int(rand() * len(adults))]
            born = people.birth[rep]
            founded = date(picked_years[i], 1, 1) + timedelta(days=int(rand() * 365))
            founded = min(max(founded, born.replace(year=born.year + 20, day=min(born.day, 28))), AS_OF)
            # Registration authority: mostly the district's bureau, some at city or province level.
            r = rand()
            region = d.code if r < 0.7 else d.city.code if r < 0.95 else "610000"
            while True:
                code = _new_credit_code(rand, region, founded >= reform)
                if code not in seen_codes:
                    break
            seen_codes.add(code)
            words = _INDUSTRY_WORDS[picked_industries[i]]
            suffix = _name_suffix(picked_kinds[i])
            places = (d.city.short, d.city.short, d.city.name, "陕西")
            while True:
                brand = rng.pick(_BRAND_CHARS) + rng.pick(_BRAND_CHARS)
                name = f"{rng.pick(places)}{brand}{rng.pick(words)}{suffix}"
                if name not in seen_names:
                    break
            seen_names.add(name)
            e.credit.append(code)
            e.names.append(name)
            e.rep.append(rep)
            e.founded.append(self._day(founded))
        return e

    def _enterprise_rows(self) -> Iterator[tuple[Any, ...]]:
        e = self._enterprises
        p = self._people
        rng = self._rng("enterprise_registration")
        for i in range(len(e.credit)):
            rep = e.rep[i]
            phone = p.phone[rep] if p.phone[rep] and rng.random() < 0.6 else self._mobile(rng)
            d = e.district[i]
            yield (
                e.credit[i],
                e.names[i],
                p.names[rep],
                p.ids[rep],
                phone,
                e.capital[i],
                e.founded[i],
                e.kind[i],
                e.industry[i],
                self._address(rng, d, home=False),
                d.code,
                d.name,
                e.status[i],
            )

    # -- tax ratings ----------------------------------------------------------------------

    @cached_property
    def _tax_plan(self) -> list[tuple[int, int, str]]:
        """(enterprise index, rating year, rating) for each published rating."""
        rng = self._rng("tax_plan")
        e = self._enterprises
        plan = []
        for i in range(len(e.credit)):
            if e.status[i] != "存续" or rng.random() < 0.3:  # not every taxpayer is evaluated
                continue
            usual = rng.draw1(_RATINGS)
            for year in _RATING_YEARS:
                if e.founded[i].year > year:
                    continue
                if e.founded[i].year == year:
                    rating = "M"  # newly established enterprises are rated M
                elif rng.random() < 0.8:
                    rating = "B" if usual == "M" else usual
                else:
                    rating = rng.pick("ABBBCD")
                plan.append((i, year, rating))
        return plan

    def _tax_rows(self) -> Iterator[tuple[Any, ...]]:
        e = self._enterprises
        rng = self._rng("tax_credit_rating")
        general = {i: rng.random() < 0.35 for i in sorted({i for i, _, _ in self._tax_plan})}
        for i, year, rating in self._tax_plan:
            # Tax paid scales with capital; general taxpayers pay more. Two decimals, in yuan.
            scale = float(e.capital[i]) * (400 if general[i] else 60)
            cents = int(rng.lognormvariate(math.log(max(scale, 1_000)), 1.0) * 100)
            yield (
                e.credit[i],
                e.names[i],
                "一般纳税人" if general[i] else "小规模纳税人",
                year,
                rating,
                Decimal(cents).scaleb(-2),
                self._day(date(year + 1, 4, 1 + rng.below(20))),
            )

    # -- discharge permits ----------------------------------------------------------------

    @cached_property
    def _permit_plan(self) -> list[tuple[int, int]]:
        """(enterprise index, permit serial) for each permit."""
        rng = self._rng("permit_plan")
        e = self._enterprises
        plan = []
        for i in range(len(e.credit)):
            if e.industry[i] in _PERMIT_INDUSTRIES and e.status[i] == "存续" and rng.random() < 0.7:
                plan.append((i, 1))
                if rng.random() < 0.1:  # a second plant
                    plan.append((i, 2))
        return plan

    def _permit_rows(self) -> Iterator[tuple[Any, ...]]:
        e = self._enterprises
        rng = self._rng("discharge_permit")
        for i, serial in self._permit_plan:
            d = e.district[i]
            authority = "杨凌示范区生态环境局" if d.code == "610403" else f"{d.city.name}生态环境局"
            # Permits last five years; a few lapsed before the demo's "today".
            start = max(e.founded[i], AS_OF - timedelta(days=rng.between(30, 5 * 365 + 200)))
            end = start.replace(year=start.year + 5, day=min(start.day, 28)) - timedelta(days=1)
            yield (
                f"{e.credit[i]}{serial:03d}P",
                e.credit[i],
                e.names[i],
                rng.pick(_PERMIT_INDUSTRIES[e.industry[i]]),
                rng.draw1(_POLLUTANTS),
                "重点管理" if rng.random() < 0.3 else "简化管理",
                authority,
                self._day(start),
                self._day(end),
                d.code,
                d.name,
            )

    # -- air quality ----------------------------------------------------------------------

    def _aqi_rows(self) -> Iterator[tuple[Any, ...]]:
        rng = self._rng("air_quality_daily")
        days = self.size.aqi_days
        first = AS_OF - timedelta(days=days - 1)
        # A log-AR(1) weather anomaly per city: pollution episodes last several days.
        anomaly = dict.fromkeys(AQI_CITIES, 0.0)
        for k in range(days):
            day = first + timedelta(days=k)
            doy = day.timetuple().tm_yday
            # Heating season (mid-November to mid-March) roughly doubles PM2.5; ozone peaks in June.
            winter = 1 + 0.75 * math.cos(2 * math.pi * (doy - 10) / 365.25)
            summer = max(0.0, math.cos(2 * math.pi * (doy - 172) / 365.25))
            for city in AQI_CITIES:
                a = anomaly[city] = 0.7 * anomaly[city] + rng.gauss(0, 0.35)
                pm25 = max(3.0, _CITY_PM25[city] * winter * math.exp(a - 0.12))
                pm10 = pm25 * rng.uniform(1.5, 2.1)
                if city in _DUSTY and 60 <= doy <= 150 and rng.random() < 0.05:
                    pm10 *= rng.uniform(3, 6)  # a dust day
                o3 = max(10.0, 55 + 115 * summer * math.exp(rng.gauss(0, 0.2)) - 8 * a)
                iaqi = {
                    "PM2.5": _iaqi(pm25, *_PM25_BREAKS),
                    "PM10": _iaqi(pm10, *_PM10_BREAKS),
                    "O3": _iaqi(o3, *_O3_8H_BREAKS),
                }
                aqi = math.ceil(max(iaqi.values()))
                primary = None
                if aqi > 50:
                    primary = ",".join(p for p, v in iaqi.items() if math.ceil(v) == aqi)
                level = next((label for upper, label in _AQI_LEVELS if aqi <= upper), "严重污染")
                # Concentrations are published as whole μg/m³.
                pm25, pm10, o3 = float(round(pm25)), float(round(pm10)), float(round(o3))
                yield (city, day, aqi, pm25, pm10, o3, primary, level)

    # -- social insurance -----------------------------------------------------------------

    @cached_property
    def _insurance_plan(self) -> list[tuple[int, int, str, str, tuple[str, ...]]]:
        """(person, employer enterprise, status, last contribution month, insurance types)."""
        rng = self._rng("insurance_plan")
        p = self._people
        e = self._enterprises
        employers = [i for i in range(len(e.credit)) if e.status[i] == "存续"]
        if not employers:
            return []
        # Bigger enterprises (by registered capital) employ more people.
        employer_cum = list(accumulate(math.sqrt(float(e.capital[i])) for i in employers))
        total = employer_cum[-1]
        latest = f"{AS_OF.year:04d}-{AS_OF.month:02d}"
        plan = []
        for i in range(len(p.ids)):
            age = AS_OF.year - p.birth[i].year
            retire = 60 if p.male[i] else 55
            if not 18 <= age < retire or rng.random() < 0.45:
                continue
            employer = employers[min(bisect(employer_cum, rng.random() * total), len(employers) - 1)]
            r = rng.random()
            if r < 0.9:
                status, month = "正常参保", latest
            else:
                back = rng.between(1, 24)  # months since the last contribution
                y, mo = divmod(AS_OF.year * 12 + AS_OF.month - 1 - back, 12)
                status, month = ("暂停缴费" if r < 0.97 else "终止参保"), f"{y:04d}-{mo + 1:02d}"
            types = tuple(
                t for t, share in zip(_INSURANCE_TYPES, (1.0, 0.9, 0.85), strict=True) if rng.random() < share
            )
            plan.append((i, employer, status, month, types))
        return plan

    def _insurance_rows(self) -> Iterator[tuple[Any, ...]]:
        p = self._people
        e = self._enterprises
        rng = self._rng("social_insurance")
        bases = [Decimal(v) for v in range(_BASE_MIN, _BASE_MAX + 1)]
        for person, employer, status, month, types in self._insurance_plan:
            # One base per person: every insurance is paid on the same declared wage.
            wage = int(rng.lognormvariate(math.log(6_000), 0.45))
            base = bases[min(max(wage, _BASE_MIN), _BASE_MAX) - _BASE_MIN]
            for insurance in types:
                yield (
                    p.ids[person],
                    p.names[person],
                    e.credit[employer],
                    e.names[employer],
                    insurance,
                    base,
                    month,
                    status,
                )


def generate(dataset: str, size: str | Size = "small", seed: int = DEFAULT_SEED) -> list[tuple[Any, ...]]:
    """All rows of one dataset (convenience for tests and scripts; the loader streams instead)."""
    return list(DemoGenerator(size, seed).rows(dataset))
