"""The portal pages' words, Chinese first with English beside (docs/portal.md §Pages).

Every string a person reads on `/explore` and `/explore/datasets/{code}` comes from `MESSAGES`
(the templates call `t("key")`), so a translation is one line here and a test can check that both
languages have every key. The language is `?lang=zh|en` when given (and then remembered in the
`shuqiao_lang` cookie), else that cookie, else Chinese. Catalogue content (dataset names,
descriptions, 信息项名称) is the catalogue's own: English where the catalogue has it (`name_en`),
Chinese otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

LANGS = ("zh", "en")
DEFAULT = "zh"
COOKIE = "shuqiao_lang"
HTML_LANG = {"zh": "zh-CN", "en": "en"}

# key: (中文, English). Placeholders are str.format fields.
MESSAGES: dict[str, tuple[str, str]] = {
    "site.title": ("数桥 公共数据开放", "Shuqiao open data"),
    "site.skip": ("跳到主要内容", "Skip to main content"),
    "site.switch": ("English", "中文"),
    "site.switch_label": ("Switch to English", "切换到中文"),
    "nav.label": ("站点导航", "Site"),
    "nav.catalogue": ("开放目录", "Catalogue"),
    "nav.workbench": ("查询工作台", "Query workbench"),
    "nav.stats": ("使用统计", "Usage statistics"),
    "nav.dcat": ("DCAT 目录", "DCAT catalogue"),
    "nav.ckan": ("CKAN 接口", "CKAN API"),
    "nav.json": ("本页 JSON", "This page as JSON"),
    "footer.api": (
        "开放接口 {endpoint}：匿名即可调用无条件开放的数据。",
        "Open API {endpoint}: anyone may call it for unconditionally open data.",
    ),
    # the catalogue page
    "cat.heading": ("开放目录", "Open-data catalogue"),
    "cat.search": ("搜索", "Search"),
    "cat.search_label": ("搜索数据集", "Search datasets"),
    "cat.search_hint": ("如：空气、企业登记、排污许可", "e.g. air, enterprise, permit"),
    "cat.sort": ("排序", "Sort"),
    "cat.sort.default": ("默认", "Default"),
    "cat.sort.relevance": ("相关度", "Relevance"),
    "cat.sort.name": ("资源代码", "Resource code"),
    "cat.sort.modified": ("最近更新", "Recently updated"),
    "cat.sort.used": ("最常使用（近30天）", "Most used (last 30 days)"),
    "cat.submit": ("搜索", "Search"),
    "cat.found": ("找到 {count} 个数据集", "{count} datasets found"),
    "cat.found_q": ("“{q}” 找到 {count} 个数据集", "{count} datasets found for “{q}”"),
    "cat.none": ("没有找到符合条件的数据集。", "No dataset matches."),
    "cat.clear": ("清除全部条件", "Clear all"),
    "cat.facets": ("筛选", "Refine"),
    "cat.unselect": ("取消选择", "unselect"),
    "cat.results": ("搜索结果", "Results"),
    "cat.updated": ("更新于 {date}", "updated {date}"),
    "facet.dept": ("提供部门", "Provider"),
    "facet.category": ("资源分类", "Category"),
    "facet.theme": ("主题", "Topic"),
    "facet.open": ("开放属性", "Openness"),
    "facet.cycle": ("更新周期", "Update cycle"),
    "pager.label": ("分页", "Pages"),
    "pager.first": ("首页", "First page"),
    "pager.prev": ("上一页", "Previous page"),
    "pager.next": ("下一页", "Next page"),
    "pager.of": ("第 {page} / {pages} 页", "Page {page} of {pages}"),
    "pager.page": ("第 {page} 页", "Page {page}"),
    # dataset metadata
    "ds.back": ("返回开放目录", "Back to the catalogue"),
    "ds.meta": ("基本信息", "About this dataset"),
    "ds.resource_code": ("资源代码", "Resource code"),
    "ds.department": ("提供部门", "Provider"),
    "ds.category": ("资源分类", "Category"),
    "ds.theme": ("主题", "Topic"),
    "ds.cycle": ("更新周期", "Update cycle"),
    "ds.open": ("开放属性", "Openness"),
    "ds.licence": ("许可协议", "Licence"),
    "ds.contact": ("联系方式", "Contact"),
    "ds.published": ("首次发布", "First published"),
    "ds.updated": ("最近更新", "Last updated"),
    "ds.rows": ("数据条数", "Rows"),
    "ds.entity": ("实体主键", "Entity key"),
    "ds.tags": ("关键词", "Keywords"),
    "ds.root": ("GraphQL 根字段", "GraphQL root field"),
    "ds.not_stated": ("未注明", "not stated"),
    "ds.not_loaded": ("尚未加载", "not loaded yet"),
    "entity.legal_entity": ("法人（统一社会信用代码）", "legal entity (unified social credit code)"),
    "entity.person": ("自然人（身份证号）", "person (citizen ID number)"),
    "ds.conditional": (
        "有条件开放：本数据集的数据只提供给持有已批准开放申请的企业。"
        "请在请求头 {header} 中携带贵单位的 API Key；匿名请求会被拒绝（下方显示接口的实际答复）。",
        "Conditionally open: rows are given only to enterprises holding an approved application. "
        "Send your API key in the {header} header; anonymous requests are refused "
        "(the API's actual answer is shown below).",
    ),
    "ds.apply": ("申请使用本数据集", "Apply for this dataset"),
    "ds.fields": ("信息项", "Fields"),
    "ds.fields_count": ("共 {n} 项", "{n} fields"),
    "field.title": ("信息项名称", "Field"),
    "field.name": ("字段名", "Name"),
    "field.type": ("类型", "Type"),
    "field.level": ("分级", "Level"),
    "field.note": ("说明", "Notes"),
    "field.masked": ("脱敏后开放", "opened masked"),
    "field.filterable": ("可筛选、排序", "filterable, sortable"),
    # the preview
    "pv.heading": ("数据预览", "Preview"),
    "pv.form": ("筛选和排序", "Filter and sort"),
    "pv.field": ("筛选信息项", "Filter field"),
    "pv.no_filter": ("（不筛选）", "(no filter)"),
    "pv.op": ("条件", "Condition"),
    "pv.value": ("值", "Value"),
    "pv.order": ("排序", "Sort by"),
    "pv.no_order": ("（默认顺序）", "(default order)"),
    "pv.dir": ("方向", "Direction"),
    "pv.asc": ("升序", "ascending"),
    "pv.desc": ("降序", "descending"),
    "pv.size": ("每页条数", "Rows per page"),
    "pv.apply": ("查询", "Apply"),
    "pv.clear": ("清除筛选", "Clear"),
    "pv.status": (
        "共 {total} 条 · 第 {page} 页 · 本页 {n} 条",
        "{total} rows · page {page} · {n} on this page",
    ),
    "pv.table": ("数据预览表（可横向滚动）", "Preview table (scrolls horizontally)"),
    "pv.error": ("接口答复", "The API answered"),
    "pv.empty": ("没有符合条件的数据。", "No rows match."),
    "op.eq": ("等于", "equals"),
    "op.neq": ("不等于", "not equal to"),
    "op.gt": ("大于", "greater than"),
    "op.gte": ("大于等于", "at least"),
    "op.lt": ("小于", "less than"),
    "op.lte": ("小于等于", "at most"),
    "op.prefix": ("前缀为", "starts with"),
    # downloads
    "dl.heading": ("下载", "Download"),
    "dl.scope_all": ("全部数据", "the whole dataset"),
    "dl.scope_filter": ("当前筛选结果", "the current filter"),
    "dl.intro": ("下载{scope}：", "Download {scope}:"),
    "dl.hint": (
        "CSV 为带 BOM 的 UTF-8，可直接用 Excel 打开；字段与开放接口一致（脱敏字段同样脱敏）。",
        "CSV is UTF-8 with a byte-order mark, so Excel opens it directly; "
        "the fields are the open API's (masked ones masked).",
    ),
    "dl.with_key": (
        "有条件开放的数据需携带 API Key 下载：",
        "Conditionally open data downloads with an API key:",
    ),
    # charts
    "ch.heading": ("图表", "Charts"),
    "ch.whole": (
        "基于全部 {rows} 条数据，在数据库中汇总。",
        "Over all {rows} rows, aggregated in the database.",
    ),
    "ch.measure": ("数值", "Measure"),
    "ch.count": ("条数", "row count"),
    "ch.show": ("显示", "Show"),
    "ch.series": ("{measure}随{time}变化（按{bucket}）", "{measure} over {time} (per {bucket})"),
    "ch.series_avg": ("平均{measure}", "average {measure}"),
    "ch.by_district": ("按{district}分布：{measure}", "{measure} by {district}"),
    "ch.table": ("图表数据表", "Chart data as a table"),
    "ch.period": ("时间", "Period"),
    "ch.rows": ("条数", "Rows"),
    "ch.average": ("平均值", "Average"),
    "ch.none": (
        "本数据集没有可绘制的日期或区县信息项。",
        "This dataset has no date or district field to chart.",
    ),
    "ch.unavailable": (
        "有条件开放的数据不在公开页面上汇总。",
        "Conditionally open data is not charted on the public page.",
    ),
    "ch.more": ("另有 {n} 个取值未显示", "{n} more values not shown"),
    "bucket.day": ("日", "day"),
    "bucket.month": ("月", "month"),
    "bucket.year": ("年", "year"),
    # usage
    "us.heading": ("使用情况", "Usage"),
    "us.link": ("每日调用和下载次数（JSON）", "Calls and downloads per day (JSON)"),
    "us.all": ("全部数据集的使用统计", "Usage of every dataset"),
    "us.date": ("日期", "Date"),
    "us.calls": ("调用次数", "Calls"),
    "us.downloads": ("下载次数", "Downloads"),
    # the API
    "api.heading": ("接口调用", "Use it from code"),
    "api.intro": ("以下查询与本页当前显示的内容一致。", "These return exactly what this page shows."),
    "api.query": ("GraphQL 查询", "GraphQL query"),
    "api.variables": ("变量 variables", "Variables"),
    "api.curl": ("curl 命令", "curl command"),
    "api.copy": ("复制", "Copy"),
    "api.copied": ("已复制", "Copied"),
    "api.workbench": ("在查询工作台中打开", "Open in the query workbench"),
    "api.key_placeholder": ("<您的 API Key>", "<your API key>"),
    "api.formats": ("元数据：", "Metadata:"),
    # errors
    "err.not_found": ("没有这个开放数据集。", "There is no such open dataset."),
    "err.rate": (
        "访问过于频繁：本页的访问额度已用完，请在 {seconds} 秒后重试。",
        "Too many requests: this page's allowance is used up; try again in {seconds} s.",
    ),
    "err.bad_request": ("请求有误：{message}", "Bad request: {message}"),
    # labels of catalogue values
    "category.base": ("基础库", "base register"),
    "category.theme": ("主题库", "thematic"),
    "category.special": ("专题库", "special-purpose"),
    "open.unconditional": ("无条件开放", "open"),
    "open.conditional": ("有条件开放", "conditionally open"),
    "cycle.realtime": ("实时", "real time"),
    "cycle.hourly": ("每小时", "hourly"),
    "cycle.daily": ("每日", "daily"),
    "cycle.weekly": ("每周", "weekly"),
    "cycle.monthly": ("每月", "monthly"),
    "cycle.quarterly": ("每季度", "quarterly"),
    "cycle.yearly": ("每年", "yearly"),
    "cycle.annually": ("每年", "yearly"),
    "cycle.irregular": ("不定期", "irregular"),
}

Translate = Callable[..., str]


def choose(request: Request) -> tuple[str, bool]:
    """(language, whether the request chose it explicitly with ?lang=)."""
    asked = request.query_params.get("lang")
    if asked in LANGS:
        return asked, True
    cookie = request.cookies.get(COOKIE)
    return (cookie if cookie in LANGS else DEFAULT), False


def translator(lang: str) -> Translate:
    index = LANGS.index(lang)

    def t(key: str, **values: Any) -> str:
        text = MESSAGES[key][index]
        return text.format(**values) if values else text

    return t


def label(t: Translate, kind: str, value: str) -> str:
    """A catalogue value's label (category, open attribute, update cycle), or the value itself."""
    key = f"{kind}.{value}"
    return t(key) if key in MESSAGES else value


def remember(response: Response, lang: str, explicit: bool) -> None:
    """Keep an explicit choice for the next pages (a year; readable by no script)."""
    if explicit:
        response.set_cookie(COOKIE, lang, max_age=365 * 86400, path="/", httponly=True, samesite="lax")
