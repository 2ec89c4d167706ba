"""The `/stats` page: the statistics documents (gateway.portal.stats) as HTML, Chinese first,
rendered on the server with no script at all (the CSP allows none). Every chart is an inline SVG
with a text summary (`role="img"`, `aria-label`) and the same figures as a table beside it."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import urlencode

from gateway.portal.stats import PERIODS

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
CHART_W, CHART_H, LEFT, BOTTOM, TOP_PAD = 720, 200, 44, 22, 12
BAR_W = 160
MAX_BAR = 24


def _url(days: int, dataset: str | None = None) -> str:
    params: dict[str, Any] = {"days": days}
    if dataset:
        params["dataset"] = dataset
    return "/stats?" + urlencode(params)


def _num(n: int) -> str:
    return f"{n:,}"


def _axis(plot_h: float) -> str:
    y = TOP_PAD + plot_h
    return f'<line class="axis" x1="{LEFT}" x2="{CHART_W - 4}" y1="{y}" y2="{y}"/>'


def _daily_chart(daily: list[dict[str, Any]], label: str) -> str:
    """Grouped bars per day: calls and downloads, on one scale from 0 to the busiest value."""
    peak = max([1, *(p["calls"] for p in daily), *(p["downloads"] for p in daily)])
    plot_w, plot_h = CHART_W - LEFT - 4, CHART_H - BOTTOM - TOP_PAD
    step = plot_w / len(daily)
    bar = min(max(step / 2 - 0.5, 0.5), MAX_BAR)  # two bars a day, never wider than MAX_BAR
    parts = [
        _axis(plot_h),
        f'<line class="grid" x1="{LEFT}" x2="{CHART_W - 4}" y1="{TOP_PAD}" y2="{TOP_PAD}"/>',
        f'<text class="tick" x="{LEFT - 4}" y="{TOP_PAD + 4}" text-anchor="end">{_num(peak)}</text>',
        f'<text class="tick" x="{LEFT - 4}" y="{TOP_PAD + plot_h}" text-anchor="end">0</text>',
    ]
    for i, p in enumerate(daily):
        x = LEFT + i * step + (step - 2 * bar) / 2
        for j, key in enumerate(("calls", "downloads")):
            h = round(p[key] / peak * plot_h, 1)
            parts.append(
                f'<rect class="{key}" x="{round(x + j * bar, 1)}" y="{round(TOP_PAD + plot_h - h, 1)}" '
                f'width="{round(bar, 1)}" height="{h}"><title>{p["date"]} '
                f"{'调用' if key == 'calls' else '下载'} {p[key]}</title></rect>"
            )
    for i in sorted({0, len(daily) // 2, len(daily) - 1}):
        anchor = "start" if i == 0 else ("end" if i == len(daily) - 1 else "middle")
        x = LEFT + i * step + (step if anchor == "end" else step / 2 if anchor == "middle" else 0)
        parts.append(
            f'<text class="tick" x="{round(x, 1)}" y="{CHART_H - 6}" text-anchor="{anchor}">'
            f"{daily[i]['date'][5:]}</text>"
        )
    return (
        f'<svg class="chart" viewBox="0 0 {CHART_W} {CHART_H}" role="img" aria-label="{escape(label)}">'
        + "".join(parts)
        + "</svg>"
    )


def _daily_summary(daily: list[dict[str, Any]], what: str) -> str:
    calls = sum(p["calls"] for p in daily)
    downloads = sum(p["downloads"] for p in daily)
    busiest = max(daily, key=lambda p: (p["calls"] + p["downloads"], p["date"]))
    text = (
        f"{what}：{daily[0]['date']} 至 {daily[-1]['date']} 每日调用与下载柱状图。"
        f"合计调用 {calls} 次，下载 {downloads} 次"
    )
    if busiest["calls"] + busiest["downloads"]:
        text += f"；最多的一天 {busiest['date']}（调用 {busiest['calls']}，下载 {busiest['downloads']}）"
    return text + "。"


def _daily_table(daily: list[dict[str, Any]], caption: str) -> str:
    rows = "".join(
        f'<tr><th scope="row">{p["date"]}</th><td class="num">{_num(p["calls"])}</td>'
        f'<td class="num">{_num(p["downloads"])}</td></tr>'
        for p in reversed(daily)
    )
    return (
        f"<details><summary>数据表 <small>table</small></summary>"
        f'<div class="table-wrap"><table><caption>{escape(caption)}</caption>'
        '<thead><tr><th scope="col">日期 date</th><th scope="col">调用 calls</th>'
        f'<th scope="col">下载 downloads</th></tr></thead><tbody>{rows}</tbody></table></div></details>'
    )


def _legend() -> str:
    return (
        '<p class="legend"><span class="swatch calls" aria-hidden="true"></span>调用 calls'
        '<span class="swatch downloads" aria-hidden="true"></span>下载 downloads（完整下载）</p>'
    )


def _daily_section(heading: str, hid: str, daily: list[dict[str, Any]], what: str) -> str:
    summary = _daily_summary(daily, what)
    return (
        f'<section aria-labelledby="{hid}"><h2 id="{hid}">{heading}</h2>'
        f'{_daily_chart(daily, summary)}{_legend()}<p class="hint">{escape(summary)}</p>'
        f"{_daily_table(daily, what + ' 每日调用与下载')}</section>"
    )


def _bar(value: int, peak: int, key: str) -> str:
    width = 0 if peak <= 0 else round(value / peak * BAR_W)
    return (
        f'<svg class="bar" width="{BAR_W}" height="12" viewBox="0 0 {BAR_W} 12" aria-hidden="true">'
        f'<rect class="{key}" x="0" y="1" width="{width}" height="10"/></svg>'
    )


def _top_table(entries: list[dict[str, Any]], key: str, caption: str, days: int) -> str:
    if not entries:
        return f'<h3>{caption}</h3><p class="hint">本期暂无记录。No use recorded in this period.</p>'
    peak = entries[0][key]
    rows = "".join(
        f'<tr><td class="num">{i}</td><th scope="row"><a href="{escape(_url(days, e["dataset"]))}">'
        f'{escape(e["name"])}</a></th><td class="num">{_num(e[key])}</td>'
        f"<td>{_bar(e[key], peak, key)}</td></tr>"
        for i, e in enumerate(entries, 1)
    )
    return (
        f'<div class="table-wrap"><table class="top"><caption>{caption}</caption>'
        '<thead><tr><th scope="col">名次</th><th scope="col">数据集 dataset</th>'
        f'<th scope="col">次数</th><th scope="col"><span class="sr">比例</span></th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )


def _datasets_table(doc: dict[str, Any]) -> str:
    days = doc["days"]
    rows = "".join(
        "<tr>"
        f"<td><code>{escape(d['resource_code'])}</code></td>"
        f'<th scope="row"><a href="{escape(_url(days, d["dataset"]))}">{escape(d["name"])}</a></th>'
        f"<td>{escape(d['department'])}</td>"
        f"<td>{'有条件开放' if d['conditional'] else '无条件开放'}</td>"
        f'<td class="num">{_num(d["calls"])}</td><td class="num">{_num(d["downloads"])}</td>'
        f'<td class="num">{d["active_days"]}</td>'
        f'<td><a href="{escape(d["usage"])}">JSON</a></td>'
        "</tr>"
        for d in doc["datasets"]
    )
    return (
        '<div class="table-wrap"><table id="datasets"><caption>各开放数据集的调用与下载 '
        f"<small>近 {days} 天</small></caption><thead><tr>"
        '<th scope="col">资源代码</th><th scope="col">数据集 dataset</th><th scope="col">提供部门</th>'
        '<th scope="col">开放属性</th><th scope="col">调用 calls</th><th scope="col">下载 downloads</th>'
        '<th scope="col">有使用的天数 active days</th><th scope="col">每日 daily</th>'
        f"</tr></thead><tbody>{rows}</tbody></table></div>"
    )


def _growth_section(catalogue: dict[str, Any]) -> str:
    points = catalogue["growth"]
    head = (
        '<section aria-labelledby="h-growth"><h2 id="h-growth">目录增长 <small>catalogue growth</small></h2>'
        f"<p>开放数据集 {catalogue['open_datasets']} 个（无条件开放 {catalogue['unconditional']}，"
        f"有条件开放 {catalogue['conditional']}），按首次发布月份累计。</p>"
    )
    if not points:
        return head + '<p class="hint">目录中尚无发布日期。</p></section>'
    peak = max(p["total"] for p in points)
    plot_w, plot_h = CHART_W - LEFT - 4, CHART_H - BOTTOM - TOP_PAD
    step = plot_w / len(points)
    bars = []
    for i, p in enumerate(points):
        h = round(p["total"] / peak * plot_h, 1)
        width = min(step * 0.7, 2 * MAX_BAR)
        x = round(LEFT + i * step + (step - width) / 2, 1)
        bars.append(
            f'<rect class="growth" x="{x}" y="{round(TOP_PAD + plot_h - h, 1)}" '
            f'width="{round(width, 1)}" height="{h}">'
            f"<title>{p['month']}：累计 {p['total']}（新增 {p['added']}）</title></rect>"
        )
    for i in sorted({0, len(points) - 1}):
        x = round(LEFT + i * step + step / 2, 1)
        bars.append(
            f'<text class="tick" x="{x}" y="{CHART_H - 6}" text-anchor="middle">{points[i]["month"]}</text>'
        )
    label = (
        f"开放数据集累计数量柱状图：{points[0]['month']} 至 {points[-1]['month']}，"
        f"从 {points[0]['total']} 个增至 {points[-1]['total']} 个。"
    )
    svg = (
        f'<svg class="chart" viewBox="0 0 {CHART_W} {CHART_H}" role="img" aria-label="{escape(label)}">'
        + _axis(plot_h)
        + f'<text class="tick" x="{LEFT - 4}" y="{TOP_PAD + 4}" text-anchor="end">{peak}</text>'
        f'<text class="tick" x="{LEFT - 4}" y="{TOP_PAD + plot_h}" text-anchor="end">0</text>'
        + "".join(bars)
        + "</svg>"
    )
    rows = "".join(
        f'<tr><th scope="row">{p["month"]}</th><td class="num">{p["added"]}</td>'
        f'<td class="num">{p["total"]}</td></tr>'
        for p in points
    )
    table = (
        '<details><summary>数据表 <small>table</small></summary><div class="table-wrap"><table id="growth">'
        "<caption>按首次发布月份的开放数据集</caption>"
        '<thead><tr><th scope="col">月份 month</th><th scope="col">新增 added</th>'
        f'<th scope="col">累计 total</th></tr></thead><tbody>{rows}</tbody></table></div></details>'
    )
    return head + svg + f'<p class="hint">{escape(label)}</p>' + table + "</section>"


def _periods(days: int, dataset: str | None) -> str:
    links = []
    for n in PERIODS:
        current = ' aria-current="page"' if n == days else ""
        links.append(f'<a href="{escape(_url(n, dataset))}"{current}>近 {n} 天</a>')
    return f'<nav class="periods" aria-label="统计周期 period">{"".join(links)}</nav>'


def _shell(title: str, body: str, json_href: str) -> str:
    return f"""<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/stats/static/stats.css">
<link rel="alternate" type="application/json" href="{escape(json_href)}">
</head>
<body>
<header>
  <h1>数桥 开放数据使用统计 <small>Open-data usage statistics</small></h1>
  <nav aria-label="相关页面 related pages"><a href="/explore">开放目录 open data</a>
  <a href="/kpi">共享开放指标 KPIs</a><a href="{escape(json_href)}">JSON</a></nav>
</header>
<main>
{body}
</main>
</body>
</html>
"""


def render_page(doc: dict[str, Any], selected: dict[str, Any] | None = None) -> str:
    """The page for one period (`doc`: the /stats.json document) and, when one is chosen, one
    dataset (`selected`: its /stats/datasets/{code}.json document)."""
    days = doc["days"]
    code = selected["dataset"] if selected else None
    names = {d["dataset"]: d for d in doc["datasets"]}
    intro = (
        f'<p class="hint">统计区间 {doc["since"]} 至 {doc["until"]}（北京时间），数据截至 '
        f"{escape(doc['as_of'].replace('T', ' ').replace('Z', ' UTC'))}。"
        "仅统计开放接口上开放数据集的使用：调用（读取了该数据集的 GraphQL 请求）与完整下载的次数；"
        "不含任何使用者的身份。Counts of calls and completed downloads on the open tier only; no one's "
        "identity is kept.</p>"
    )
    figures = (
        '<section aria-labelledby="h-totals"><h2 id="h-totals">总览 <small>overview</small></h2>'
        '<dl class="figures">'
        f"<div><dt>调用 calls</dt><dd>{_num(doc['totals']['calls'])}</dd></div>"
        f"<div><dt>下载 downloads</dt><dd>{_num(doc['totals']['downloads'])}</dd></div>"
        f"<div><dt>开放数据集 open datasets</dt><dd>{doc['catalogue']['open_datasets']}</dd></div>"
        "</dl></section>"
    )
    parts = [_periods(days, code), intro]
    if selected is not None and code is not None:
        entry = names.get(code, {})
        name = str(entry.get("name", code))
        parts.append(
            f'<p><a href="{escape(_url(days))}">← 全部数据集 all datasets</a> · '
            f'<a href="/stats/datasets/{escape(code)}.json?days={days}">JSON</a></p>'
        )
        parts.append(
            _daily_section(
                f"{escape(name)} <small>{escape(code)}</small>", "h-dataset", selected["days"], name
            )
        )
    else:
        parts.append(figures)
        parts.append(
            _daily_section("每日调用与下载 <small>per day</small>", "h-daily", doc["daily"], "全部开放数据集")
        )
    top = doc["top"]
    parts.append(
        '<section aria-labelledby="h-top"><h2 id="h-top">最常用的数据集 <small>top datasets</small></h2>'
        '<div class="columns">'
        f"<div>{_top_table(top['calls'], 'calls', f'按调用次数 by calls · 近 {days} 天', days)}</div>"
        f"<div>{_top_table(top['downloads'], 'downloads', f'按下载次数 by downloads · 近 {days} 天', days)}"
        "</div>"
        "</div></section>"
    )
    parts.append(
        '<section aria-labelledby="h-datasets"><h2 id="h-datasets">各数据集 <small>per dataset</small></h2>'
        f"{_datasets_table(doc)}</section>"
    )
    parts.append(_growth_section(doc["catalogue"]))
    json_href = f"/stats/datasets/{code}.json?days={days}" if code else f"/stats.json?days={days}"
    return _shell("数桥 开放数据使用统计 · Shuqiao usage statistics", "\n".join(parts), json_href)


def render_refusal(status: int, message: str) -> str:
    """A refusal as a page (429 with the wait, 400, 404): the browser shows words, not JSON."""
    body = (
        f'<section><h2>{status}</h2><p role="alert">{escape(message)}</p>'
        '<p><a href="/stats">返回统计 back to the statistics</a></p></section>'
    )
    return _shell(f"{status} · 数桥 开放数据使用统计", body, "/stats.json")
