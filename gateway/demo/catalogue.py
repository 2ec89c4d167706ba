"""The demo catalogue (DESIGN.md section 5): five Shaanxi provincial departments, six datasets.

Resource codes (资源代码) follow one scheme:

    {province division code}-{provider department code, upper case}-{serial within department}
    610000-SAMR-000001

610000 is Shaanxi's administrative division code (GB/T 2260); the serial is six digits and
is never reused, so a code stays valid when a dataset is renamed.

Field classifications follow the policy matrix (section 4); the generator in
`gateway.demo.generate` yields rows in exactly the field order declared here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from catalogue.spec import DatasetSpec, DepartmentSpec, Entity, FieldSpec, FieldType
from gateway.identifiers import credit_code_check_char, organization_code_check_char
from policies.model import PI, Category, Level, MaskRule, Open, Share, Tier

PROVINCE_CODE = "610000"


def resource_code(department: str, serial: int) -> str:
    return f"{PROVINCE_CODE}-{department.upper()}-{serial:06d}"


DEPARTMENTS: tuple[DepartmentSpec, ...] = (
    DepartmentSpec("samr", "省市场监督管理局", "Provincial Administration for Market Regulation"),
    DepartmentSpec("tax", "省税务局", "Provincial Tax Service"),
    DepartmentSpec("eco", "省生态环境厅", "Provincial Department of Ecology and Environment"),
    DepartmentSpec(
        "hrss", "省人力资源和社会保障厅", "Provincial Department of Human Resources and Social Security"
    ),
    DepartmentSpec("police", "省公安厅", "Provincial Public Security Department"),
)

# Condition texts shown in the catalogue next to the attribute.
_SHARE_FREE = "无条件共享：经认证的政务部门均可使用"
_SHARE_ON_GRANT = "凭已批准的共享申请，限申请用途"
_SHARE_ON_GRANT_PI = (
    "凭已批准的共享申请，限申请用途；个人信息按申请的信息项提供，敏感个人信息以申请部门 SM2 公钥加密交付"
)
_OPEN_FREE = "无条件开放：任何人可浏览、下载和通过接口获取"
_OPEN_ON_GRANT = "有条件开放（授权运营）：企业凭已批准的开放申请和 API Key 访问，限申请用途"
_OPEN_NONE_PI = "含个人信息，不予开放（《个人信息保护法》）"

# Frequently used field shapes.
_ID_NUMBER = FieldSpec(
    "id_number",
    FieldType.STRING,
    "公民身份号码",
    "18 位居民身份证号码（GB 11643）",
    level=Level.L4,
    pi=PI.SENSITIVE,
    mask=MaskRule.ID_NUMBER,
    nullable=False,
    indexed=True,
)
_PERSON_NAME = FieldSpec(
    "name", FieldType.STRING, "姓名", "", level=Level.L3, pi=PI.PERSONAL, mask=MaskRule.NAME, nullable=False
)


def _credit_code(title: str = "统一社会信用代码") -> FieldSpec:
    return FieldSpec(
        "credit_code",
        FieldType.STRING,
        title,
        "18 位统一社会信用代码（GB 32100）",
        nullable=False,
        indexed=True,
    )


def _district_fields() -> tuple[FieldSpec, FieldSpec]:
    return (
        FieldSpec(
            "district_code",
            FieldType.STRING,
            "行政区划代码",
            "所在县级行政区划代码（GB/T 2260），如 610113",
            indexed=True,
        ),
        FieldSpec("district", FieldType.STRING, "所在区县", "所在县级行政区名称，如 雁塔区"),
    )


ENTERPRISE_REGISTRATION = DatasetSpec(
    code="enterprise_registration",
    resource_code=resource_code("samr", 1),
    name="企业登记信息",
    name_en="Enterprise registration",
    department="samr",
    category=Category.BASE,
    share=Share.UNCONDITIONAL,
    open=Open.UNCONDITIONAL,
    theme="市场主体",
    update_cycle="daily",
    description="在陕西省登记的企业的基本登记信息：名称、统一社会信用代码、法定代表人、注册资本、住所、登记状态等。"
    "法人基础库的组成部分。",
    share_conditions=_SHARE_FREE + "；法定代表人身份证号" + _SHARE_ON_GRANT,
    open_conditions=_OPEN_FREE + "；法定代表人身份证号、联系电话不予开放",
    entity=Entity.LEGAL_ENTITY,
    entity_field="credit_code",
    fields=(
        _credit_code(),
        FieldSpec("name", FieldType.STRING, "企业名称", nullable=False, indexed=True),
        FieldSpec(
            "legal_representative",
            FieldType.STRING,
            "法定代表人",
            "法定代表人姓名；依《市场主体登记管理条例》公示",
            pi=PI.PERSONAL,
            open_personal=True,
        ),
        FieldSpec(
            "legal_rep_id_number",
            FieldType.STRING,
            "法定代表人身份证号",
            "",
            level=Level.L4,
            pi=PI.SENSITIVE,
            share=Share.CONDITIONAL,
            open=Open.NONE,
            mask=MaskRule.ID_NUMBER,
            references=Entity.PERSON,
            link_name="legal_rep",
        ),
        FieldSpec(
            "contact_phone",
            FieldType.STRING,
            "联系电话",
            "企业登记的联系人手机号",
            level=Level.L3,
            pi=PI.PERSONAL,
            open=Open.NONE,
            mask=MaskRule.MOBILE,
        ),
        FieldSpec(
            "registered_capital", FieldType.DECIMAL, "注册资本（万元）", "认缴注册资本，单位万元人民币"
        ),
        FieldSpec("establishment_date", FieldType.DATE, "成立日期", indexed=True),
        FieldSpec("enterprise_type", FieldType.STRING, "企业类型", "如 有限责任公司（自然人投资或控股）"),
        FieldSpec(
            "industry", FieldType.STRING, "行业门类", "国民经济行业分类（GB/T 4754-2017）门类", indexed=True
        ),
        FieldSpec("registered_address", FieldType.STRING, "住所", "登记住所"),
        *_district_fields(),
        FieldSpec("status", FieldType.STRING, "登记状态", "存续 / 注销 / 吊销 / 迁出", indexed=True),
    ),
)

TAX_CREDIT_RATING = DatasetSpec(
    code="tax_credit_rating",
    resource_code=resource_code("tax", 1),
    name="纳税信用等级",
    name_en="Taxpayer credit rating",
    department="tax",
    category=Category.THEME,
    share=Share.UNCONDITIONAL,
    open=Open.CONDITIONAL,
    theme="信用",
    update_cycle="yearly",
    description="企业纳税人年度纳税信用评价结果（A/B/M/C/D 级），每年 4 月发布上一年度结果。",
    share_conditions=_SHARE_FREE,
    open_conditions=_OPEN_ON_GRANT,
    entity=Entity.LEGAL_ENTITY,
    entity_field="credit_code",
    fields=(
        _credit_code("纳税人识别号（统一社会信用代码）"),
        FieldSpec("taxpayer_name", FieldType.STRING, "纳税人名称", nullable=False),
        FieldSpec("taxpayer_type", FieldType.STRING, "纳税人类型", "一般纳税人 / 小规模纳税人"),
        FieldSpec("rating_year", FieldType.INTEGER, "评价年度", nullable=False, indexed=True),
        FieldSpec(
            "rating", FieldType.STRING, "纳税信用级别", "A / B / M / C / D", nullable=False, indexed=True
        ),
        FieldSpec(
            "tax_paid_amount",
            FieldType.DECIMAL,
            "年度纳税额（元）",
            "评价年度实际缴纳税款",
            level=Level.L3,
            mask=MaskRule.AMOUNT_RANGE,
        ),
        FieldSpec("evaluated_on", FieldType.DATE, "评价日期"),
    ),
)

DISCHARGE_PERMIT = DatasetSpec(
    code="discharge_permit",
    resource_code=resource_code("eco", 1),
    name="排污许可证信息",
    name_en="Pollutant discharge permits",
    department="eco",
    category=Category.THEME,
    share=Share.UNCONDITIONAL,
    open=Open.UNCONDITIONAL,
    theme="生态环境",
    update_cycle="daily",
    description="排污单位取得的排污许可证：许可证编号、单位、行业、污染物种类、管理类别、有效期。",
    share_conditions=_SHARE_FREE,
    open_conditions=_OPEN_FREE,
    entity=Entity.LEGAL_ENTITY,
    entity_field="credit_code",
    fields=(
        FieldSpec(
            "permit_number",
            FieldType.STRING,
            "许可证编号",
            "统一社会信用代码 + 3 位流水号 + 类别字母",
            nullable=False,
            indexed=True,
        ),
        _credit_code(),
        FieldSpec("unit_name", FieldType.STRING, "单位名称", nullable=False),
        FieldSpec("industry", FieldType.STRING, "行业类别", "排污许可分类管理名录中的行业"),
        FieldSpec("pollutant_types", FieldType.STRING, "污染物种类", "以顿号分隔，如 废气、废水"),
        FieldSpec("management_category", FieldType.STRING, "管理类别", "重点管理 / 简化管理"),
        FieldSpec("issuing_authority", FieldType.STRING, "发证机关"),
        FieldSpec("valid_from", FieldType.DATE, "有效期起"),
        FieldSpec("valid_to", FieldType.DATE, "有效期止", indexed=True),
        *_district_fields(),
    ),
)

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

AIR_QUALITY_DAILY = DatasetSpec(
    code="air_quality_daily",
    resource_code=resource_code("eco", 2),
    name="城市空气质量日报",
    name_en="Daily city air quality",
    department="eco",
    category=Category.THEME,
    share=Share.UNCONDITIONAL,
    open=Open.UNCONDITIONAL,
    theme="生态环境",
    update_cycle="daily",
    description="全省 10 个设区市和杨凌示范区的日空气质量指数（AQI，HJ 633-2012）及主要污染物浓度。",
    share_conditions=_SHARE_FREE,
    open_conditions=_OPEN_FREE,
    fields=(
        FieldSpec("city", FieldType.STRING, "城市", "、".join(AQI_CITIES), nullable=False, indexed=True),
        FieldSpec("date", FieldType.DATE, "日期", nullable=False, indexed=True),
        FieldSpec("aqi", FieldType.INTEGER, "空气质量指数", "AQI，HJ 633-2012", nullable=False),
        FieldSpec("pm25", FieldType.FLOAT, "PM2.5 日均浓度", "μg/m³"),
        FieldSpec("pm10", FieldType.FLOAT, "PM10 日均浓度", "μg/m³"),
        FieldSpec("o3_8h", FieldType.FLOAT, "臭氧日最大 8 小时平均", "μg/m³"),
        FieldSpec("primary_pollutant", FieldType.STRING, "首要污染物", "AQI 不大于 50 时为空"),
        FieldSpec(
            "quality_level",
            FieldType.STRING,
            "空气质量级别",
            "优 / 良 / 轻度污染 / 中度污染 / 重度污染 / 严重污染",
        ),
    ),
)

SOCIAL_INSURANCE = DatasetSpec(
    code="social_insurance",
    resource_code=resource_code("hrss", 1),
    name="社会保险参保缴费信息",
    name_en="Social insurance enrolment and contributions",
    department="hrss",
    category=Category.THEME,
    share=Share.CONDITIONAL,
    open=Open.NONE,
    theme="社会保障",
    update_cycle="monthly",
    description="职工参加养老、失业、工伤保险的参保状态和最近一次缴费（费款所属期、缴费基数），每人每险种一条。",
    share_conditions=_SHARE_ON_GRANT_PI,
    open_conditions=_OPEN_NONE_PI,
    entity=Entity.PERSON,
    entity_field="id_number",
    fields=(
        _ID_NUMBER,
        _PERSON_NAME,
        FieldSpec(
            "employer_credit_code",
            FieldType.STRING,
            "参保单位统一社会信用代码",
            "",
            references=Entity.LEGAL_ENTITY,
            link_name="employer",
        ),
        FieldSpec("employer_name", FieldType.STRING, "参保单位名称"),
        FieldSpec("insurance_type", FieldType.STRING, "险种", "企业职工基本养老保险 / 失业保险 / 工伤保险"),
        FieldSpec(
            "contribution_base",
            FieldType.DECIMAL,
            "缴费基数（元/月）",
            "",
            level=Level.L3,
            pi=PI.PERSONAL,
            mask=MaskRule.AMOUNT_RANGE,
        ),
        FieldSpec(
            "contribution_month",
            FieldType.STRING,
            "费款所属期",
            "最近一次缴费的所属年月，YYYY-MM",
            indexed=True,
        ),
        FieldSpec("status", FieldType.STRING, "参保状态", "正常参保 / 暂停缴费 / 终止参保"),
    ),
)

POPULATION = DatasetSpec(
    code="population",
    resource_code=resource_code("police", 1),
    name="人口基础信息",
    name_en="Population register",
    department="police",
    category=Category.BASE,
    share=Share.CONDITIONAL,
    open=Open.NONE,
    theme="人口",
    update_cycle="daily",
    description="陕西省户籍人口的基础信息：身份号码、姓名、性别、出生日期、民族、户籍地址、联系电话。人口基础库。",
    share_conditions=_SHARE_ON_GRANT_PI,
    open_conditions=_OPEN_NONE_PI,
    entity=Entity.PERSON,
    entity_field="id_number",
    fields=(
        _ID_NUMBER,
        _PERSON_NAME,
        FieldSpec("gender", FieldType.STRING, "性别", "男 / 女", level=Level.L2, pi=PI.PERSONAL),
        FieldSpec(
            "birth_date",
            FieldType.DATE,
            "出生日期",
            "",
            level=Level.L3,
            pi=PI.PERSONAL,
            mask=MaskRule.DATE_YEAR,
        ),
        FieldSpec(
            "ethnicity", FieldType.STRING, "民族", "民族属于敏感个人信息", level=Level.L3, pi=PI.SENSITIVE
        ),
        FieldSpec(
            "household_address",
            FieldType.STRING,
            "户籍地址",
            "",
            level=Level.L3,
            pi=PI.PERSONAL,
            mask=MaskRule.ADDRESS,
        ),
        FieldSpec(
            "phone",
            FieldType.STRING,
            "联系电话",
            "手机号码；未成年人多为空",
            level=Level.L3,
            pi=PI.PERSONAL,
            mask=MaskRule.MOBILE,
        ),
        *_district_fields(),
    ),
)

DATASETS: tuple[DatasetSpec, ...] = (
    ENTERPRISE_REGISTRATION,
    TAX_CREDIT_RATING,
    DISCHARGE_PERMIT,
    AIR_QUALITY_DAILY,
    SOCIAL_INSURANCE,
    POPULATION,
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
