// The open-data explorer: a thin, anonymous client of /explore/api/catalogue (the open catalogue, derived
// from the anonymous open schema) and of the real /open/graphql endpoint. No framework, no CDN, no external
// assets. Everything that came from the network is written with textContent, never as HTML.
"use strict";
(function () {
  const $ = (sel) => document.querySelector(sel);
  const OP_LABELS = { eq: "等于", neq: "不等于", gt: "大于", gte: "大于等于", lt: "小于", lte: "小于等于", prefix: "前缀为" };
  const KEY_PLACEHOLDER = "<您的 API Key>";
  let catalogue = null;
  let current = null; // the selected dataset
  let cursors = []; // `after` of each page shown so far (null for the first)
  let where = null;
  let orderBy = null;
  let shown = []; // the rows on screen (nodes), for the chart
  let latest = 0; // only the newest request's answer is drawn

  function text(el, value) { el.textContent = value === null || value === undefined ? "" : String(value); }
  function make(tag, value, cls) {
    const el = document.createElement(tag);
    if (value !== undefined) text(el, value);
    if (cls) el.className = cls;
    return el;
  }
  function say(value) { text($("#status"), value); }
  function showError(value) {
    const el = $("#api-error");
    text(el, value);
    el.hidden = !value;
  }

  // ---- the catalogue
  async function loadCatalogue() {
    try {
      const r = await fetch("/explore/api/catalogue", { headers: { Accept: "application/json" } });
      const doc = await r.json().catch(() => null);
      if (!r.ok || !doc || !Array.isArray(doc.datasets)) throw new Error(errorText(doc, r));
      catalogue = doc;
    } catch (err) {
      text($("#load-status"), "开放目录加载失败：" + err.message);
      $("#load-status").className = "error";
      return;
    }
    text($("#endpoint"), catalogue.endpoint);
    text($("#catalogue-count"), "共 " + catalogue.datasets.length + " 个数据集");
    text($("#load-status"), "");
    const shownCodes = await searchState();
    const list = $("#datasets");
    list.replaceChildren();
    const byCode = new Map(catalogue.datasets.map((d) => [d.code, d]));
    const listed = shownCodes ? shownCodes.map((c) => byCode.get(c)).filter(Boolean) : catalogue.datasets;
    for (const ds of listed) {
      const li = document.createElement("li");
      const b = make("button");
      b.type = "button";
      b.dataset.code = ds.code;
      const name = make("span", ds.name, "ds-name");
      name.appendChild(make("span", ds.openAttribute, "badge" + (ds.conditional ? " conditional" : "")));
      b.appendChild(name);
      b.appendChild(make("span", ds.department + " · " + ds.category + " · 更新周期 " + ds.updateCycle, "ds-meta"));
      b.appendChild(make("span", "资源代码 " + ds.resourceCode, "ds-meta"));
      b.addEventListener("click", () => { location.hash = "#" + encodeURIComponent(ds.code); });
      li.appendChild(b);
      list.appendChild(li);
    }
    route();
  }

  // ---- search and facets: the state is the page's own URL (/explore?q=…&dept=…), its twin /explore.json
  const FACET_LABELS = { dept: "提供部门", category: "资源分类", theme: "主题", open: "开放属性", cycle: "更新周期" };
  async function searchState() {
    const params = new URLSearchParams(location.search);
    $("#search-q").value = params.get("q") || "";
    $("#search-sort").value = params.get("sort") || "";
    $("#search-json").href = "/explore.json" + location.search;
    let doc = null, r = null;
    try {
      r = await fetch("/explore.json" + location.search, { headers: { Accept: "application/json" } });
      doc = await r.json().catch(() => null);
    } catch (err) { doc = null; }
    const box = $("#facets");
    box.replaceChildren();
    if (!r || !r.ok || !doc) {
      text($("#search-summary"), "搜索暂不可用：" + errorText(doc, r));
      return null;
    }
    const q = doc.query.q;
    text($("#search-summary"), (q ? "“" + q + "” " : "") + "找到 " + doc.count + " 个数据集");
    for (const [facet, items] of Object.entries(doc.facets)) {
      if (!items.length) continue;
      const group = make("div", undefined, "facet");
      group.appendChild(make("h3", FACET_LABELS[facet] || facet));
      const ul = document.createElement("ul");
      for (const item of items) {
        const li = document.createElement("li");
        const a = make("a", item.label + " (" + item.count + ")");
        a.href = item.url;
        a.dataset.facet = facet;
        a.dataset.value = item.value;
        if (item.selected) { a.setAttribute("aria-current", "true"); a.className = "selected"; }
        li.appendChild(a);
        ul.appendChild(li);
      }
      group.appendChild(ul);
      box.appendChild(group);
    }
    return doc.results.map((x) => x.code);
  }

  function route() {
    if (!catalogue) return;
    const code = decodeURIComponent(location.hash.replace(/^#/, ""));
    const ds = catalogue.datasets.find((d) => d.code === code);
    if (ds) select(ds);
  }

  // ---- one dataset
  function select(ds) {
    current = ds;
    cursors = [null];
    where = null;
    for (const b of document.querySelectorAll("#datasets button")) {
      b.setAttribute("aria-current", String(b.dataset.code === ds.code));
    }
    $("#welcome").hidden = true;
    $("#dataset").hidden = false;
    text($("#dataset-title"), ds.name + (ds.nameEn ? "  " + ds.nameEn : ""));
    text($("#dataset-description"), ds.description);
    const meta = $("#dataset-meta");
    meta.replaceChildren();
    for (const [k, v] of [["资源代码", ds.resourceCode], ["提供部门", ds.department], ["资源分类", ds.category],
      ["更新周期", ds.updateCycle], ["开放属性", ds.openAttribute], ["GraphQL 根字段", ds.rootField]]) {
      meta.appendChild(make("dt", k));
      meta.appendChild(make("dd", v));
    }
    $("#apikey-notice").hidden = !ds.conditional;
    text($("#apikey-header"), catalogue.apiKeyHeader);

    const tbody = $("#fields tbody");
    tbody.replaceChildren();
    for (const f of ds.fields) {
      const tr = document.createElement("tr");
      tr.appendChild(make("td", f.title));
      tr.appendChild(make("td", f.name));
      tr.appendChild(make("td", f.type));
      tr.appendChild(make("td", [f.description, f.masked ? "（脱敏后开放）" : ""].filter(Boolean).join(" ")));
      tbody.appendChild(tr);
    }
    text($("#field-count"), "（" + ds.fields.length + " 项）");

    const fieldSel = $("#filter-field");
    fieldSel.replaceChildren();
    for (const f of ds.fields.filter((x) => x.operators.length)) {
      const o = make("option", f.title + " (" + f.name + ")");
      o.value = f.name;
      fieldSel.appendChild(o);
    }
    const orderSel = $("#order-field");
    orderSel.replaceChildren(make("option", "默认"));
    orderSel.options[0].value = "";
    for (const f of ds.fields.filter((x) => x.orderBy)) {
      const o = make("option", f.title);
      o.value = f.orderBy;
      orderSel.appendChild(o);
    }
    $("#order-dir").value = "ASC";
    $("#filter").hidden = !ds.whereType;
    for (const el of [fieldSel, $("#filter-op"), $("#filter-value")]) el.disabled = !fieldSel.options.length;
    orderBy = null;
    setupChart(ds);
    fillOperators();
    $("#filter-value").value = "";
    load();
  }

  function fillOperators() {
    const f = current && current.fields.find((x) => x.name === $("#filter-field").value);
    const sel = $("#filter-op");
    sel.replaceChildren();
    for (const op of f ? f.operators : []) {
      const o = make("option", OP_LABELS[op] || op);
      o.value = op;
      sel.appendChild(o);
    }
  }

  function coerce(f, op, raw) {
    if (op === "prefix") return raw;
    switch (f.filterType) {
      case "Int": {
        const n = Number(raw);
        if (!Number.isInteger(n)) throw new Error("「" + f.title + "」需要整数");
        return n;
      }
      case "Float": {
        const n = Number(raw);
        if (raw.trim() === "" || Number.isNaN(n)) throw new Error("「" + f.title + "」需要数值");
        return n;
      }
      case "Boolean":
        if (raw !== "true" && raw !== "false") throw new Error("「" + f.title + "」需要 true 或 false");
        return raw === "true";
      default:
        return raw; // String, Date (YYYY-MM-DD), DateTime, Decimal travel as strings
    }
  }

  // ---- the GraphQL request, exactly as sent (and as shown for copying)
  function request() {
    const ds = current;
    const pageSize = Number($("#page-size").value) || 20;
    const defs = ["$first: Int", "$after: String"];
    const args = ["first: $first", "after: $after"];
    if (ds.whereType) { defs.push("$where: " + ds.whereType); args.push("where: $where"); }
    if (ds.orderByType) { defs.push("$orderBy: " + ds.orderByType); args.push("orderBy: $orderBy"); }
    const nodeFields = ds.fields.map((f) => "        " + f.name).join("\n");
    const query = "query Explore(" + defs.join(", ") + ") {\n" +
      "  " + ds.rootField + "(" + args.join(", ") + ") {\n" +
      "    totalCount\n    edges {\n      node {\n" + nodeFields + "\n      }\n    }\n" +
      "    pageInfo {\n      hasNextPage\n      endCursor\n    }\n  }\n}";
    const variables = { first: pageSize };
    const after = cursors[cursors.length - 1];
    if (after) variables.after = after;
    if (where) variables.where = where;
    if (orderBy) variables.orderBy = orderBy;
    return { query: query, variables: variables };
  }

  const shq = (s) => "'" + String(s).replace(/'/g, "'\\''") + "'";

  function curl(body) {
    const lines = ["curl -s " + shq(location.origin + catalogue.endpoint),
      "-H " + shq("Content-Type: application/json")];
    if (current.conditional) lines.push("-H " + shq(catalogue.apiKeyHeader + ": " + KEY_PLACEHOLDER));
    // the same document on one line (the query has no string literals: values travel as variables)
    const compact = { query: body.query.replace(/\s+/g, " "), variables: body.variables };
    lines.push("-d " + shq(JSON.stringify(compact)));
    return lines.join(" \\\n  ");
  }

  // A 429 in Chinese, with the wait the gateway asks for (Retry-After), instead of a bare code.
  function rateText(r) {
    const wait = Number(r.headers.get("Retry-After")) || 60;
    return "访问过于频繁：本页的访问额度已用完，请在 " + wait + " 秒后重试。" +
      "（浏览页面有单独的额度，不占用您调用开放接口的额度。）";
  }

  function errorText(doc, r) {
    if (r && r.status === 429) return rateText(r);
    if (doc && Array.isArray(doc.errors) && doc.errors.length) {
      return doc.errors.map((e) => {
        const code = e.extensions && e.extensions.code ? "[" + e.extensions.code + "] " : "";
        return code + e.message;
      }).join("\n");
    }
    return r ? "HTTP " + r.status + " " + r.statusText : "未知错误";
  }

  // ---- downloads of the whole dataset under the current filter and order (gateway.portal.downloads)
  function downloadLinks() {
    const box = $("#download-links");
    box.replaceChildren();
    const params = new URLSearchParams();
    if (where) params.set("where", JSON.stringify(where));
    if (orderBy) params.set("orderBy", JSON.stringify(orderBy));
    const qs = params.toString() ? "?" + params.toString() : "";
    for (const [fmt, label] of [["csv", "CSV"], ["xlsx", "Excel (XLSX)"], ["json", "JSON"], ["jsonl", "JSON Lines"]]) {
      if (!current.downloads || !current.downloads[fmt]) continue;
      const a = make("a", label);
      a.href = current.downloads[fmt] + qs;
      a.setAttribute("download", "");
      a.dataset.format = fmt;
      box.appendChild(a);
    }
    text($("#download-scope"), where ? "（当前筛选条件下的全部数据）" : "（全部数据）");
    // 有条件开放: a browser link carries no API key, so show the command that does
    text($("#download-key"), current.conditional
      ? "需携带 API Key：curl -OJ -H " + shq(catalogue.apiKeyHeader + ": " + KEY_PLACEHOLDER) + " " +
        shq(location.origin + current.downloads.csv + qs)
      : "");
  }

  async function load() {
    const ds = current;
    const mine = ++latest;
    const body = request();
    text($("#query"), body.query);
    text($("#variables"), JSON.stringify(body.variables, null, 2));
    text($("#curl"), curl(body));
    downloadLinks();
    showError("");
    say("查询中…");
    text($("#page-no"), "第 " + cursors.length + " 页");
    for (const id of ["#next", "#prev", "#first-page"]) $(id).disabled = true;
    let doc = null, r = null;
    try {
      // the page's own endpoint (its own rate budget); the curl below shows the public API
      r = await fetch(catalogue.previewEndpoint || catalogue.endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
      });
      doc = await r.json().catch(() => null);
    } catch (err) {
      if (mine === latest) { say(""); showError("请求失败：" + err.message); }
      return;
    }
    if (mine !== latest) return; // the user moved on
    const conn = doc && doc.data ? doc.data[ds.rootField] : null;
    if (!r.ok || !doc || (doc.errors && doc.errors.length)) showError("接口返回错误：\n" + errorText(doc, r));
    renderRows(ds, conn);
  }

  function renderRows(ds, conn) {
    const thead = $("#rows thead"), tbody = $("#rows tbody");
    thead.replaceChildren();
    tbody.replaceChildren();
    shown = conn ? conn.edges.map((e) => e.node) : [];
    drawChart();
    if (!conn) {
      say(ds.conditional ? "匿名访问无数据：需要 API Key。" : "没有数据。");
      text($("#page-no"), "");
      return;
    }
    const head = document.createElement("tr");
    for (const f of ds.fields) {
      const th = make("th", f.title);
      th.dataset.field = f.name;
      th.appendChild(make("span", f.name, "gql"));
      head.appendChild(th);
    }
    thead.appendChild(head);
    for (const edge of conn.edges) {
      const tr = document.createElement("tr");
      for (const f of ds.fields) {
        const v = edge.node[f.name];
        tr.appendChild(make("td", v, v === null || v === undefined ? "null" : ""));
      }
      tbody.appendChild(tr);
    }
    const page = cursors.length;
    say("共 " + conn.totalCount + " 条，第 " + page + " 页，本页 " + conn.edges.length + " 条");
    $("#next").disabled = !conn.pageInfo.hasNextPage;
    $("#next").dataset.after = conn.pageInfo.endCursor || "";
    $("#prev").disabled = page <= 1;
    $("#first-page").disabled = page <= 1;
  }

  // ---- a line chart of the rows on screen: x a Date field, y a number, one line per group
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f5fa8", "#d1495b", "#2e8b57", "#e09f3e", "#6a4c93", "#00798c", "#8d6a4f", "#c0587e",
    "#4f772d", "#3d5a80", "#b5651d", "#7a7a7a"];
  function svg(tag, attrs, value) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (value !== undefined) el.textContent = String(value);
    return el;
  }
  function options(sel, fields, none) {
    sel.replaceChildren();
    if (none) { const o = make("option", none); o.value = ""; sel.appendChild(o); }
    for (const f of fields) { const o = make("option", f.title); o.value = f.name; sel.appendChild(o); }
  }
  function setupChart(ds) {
    const dates = ds.fields.filter((f) => f.type === "Date");
    const numbers = ds.fields.filter((f) => f.type === "Int" || f.type === "Float");
    $("#chart-box").hidden = !dates.length || numbers.length < 2; // a time series of measures (e.g. AQI, PM2.5)
    options($("#chart-y"), numbers);
    options($("#chart-group"), ds.fields.filter((f) => f.type === "String"), "不分组");
    // one line per value of the first String field (e.g. 城市); the user may choose another or none
    const strings = ds.fields.filter((f) => f.type === "String");
    $("#chart-group").value = strings.length ? strings[0].name : "";
  }
  function drawChart() {
    const box = $("#chart"), legend = $("#chart-legend");
    box.replaceChildren();
    legend.replaceChildren();
    if (!current || $("#chart-box").hidden) return;
    const xField = current.fields.find((f) => f.type === "Date").name;
    const yField = $("#chart-y").value, gField = $("#chart-group").value;
    const points = shown.filter((n) => n[xField] && typeof n[yField] === "number")
      .map((n) => ({ x: Date.parse(n[xField]), y: n[yField], g: gField ? String(n[gField]) : "" }));
    if (!points.length) { box.appendChild(svg("text", { x: 450, y: 160, "text-anchor": "middle" }, "本页没有可绘制的数据")); return; }
    const W = 900, H = 320, L = 56, R = 16, T = 14, B = 36;
    const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(0, ...ys), y1 = Math.max(...ys) || 1;
    const sx = (x) => L + (x1 === x0 ? (W - L - R) / 2 : (x - x0) / (x1 - x0) * (W - L - R));
    const sy = (y) => H - B - (y - y0) / (y1 - y0 || 1) * (H - T - B);
    box.appendChild(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#889" }));
    box.appendChild(svg("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#889" }));
    for (const v of [y0, (y0 + y1) / 2, y1]) {
      box.appendChild(svg("text", { x: L - 6, y: sy(v) + 4, "text-anchor": "end", "font-size": 11 },
        Math.round(v * 10) / 10));
    }
    const iso = (t) => new Date(t).toISOString().slice(0, 10);
    box.appendChild(svg("text", { x: L, y: H - 12, "font-size": 11 }, iso(x0)));
    box.appendChild(svg("text", { x: W - R, y: H - 12, "font-size": 11, "text-anchor": "end" }, iso(x1)));
    const groups = new Map();
    for (const p of points) { if (!groups.has(p.g)) groups.set(p.g, []); groups.get(p.g).push(p); }
    let i = 0;
    for (const [g, ps] of groups) {
      ps.sort((a, b) => a.x - b.x);
      const color = COLORS[i++ % COLORS.length];
      const line = svg("polyline", { fill: "none", stroke: color, "stroke-width": 2,
        points: ps.map((p) => sx(p.x).toFixed(1) + "," + sy(p.y).toFixed(1)).join(" ") });
      line.dataset.group = g;
      line.appendChild(svg("title", {}, (g ? g + " " : "") + ps.length + " 点"));
      box.appendChild(line);
      for (const p of ps) box.appendChild(svg("circle", { cx: sx(p.x), cy: sy(p.y), r: 2.5, fill: color }));
      const li = make("li", g || "全部");
      li.appendChild(svg("svg", { width: 14, height: 4 })).appendChild(svg("rect", { width: 14, height: 4, fill: color }));
      legend.appendChild(li);
    }
  }
  $("#chart-y").addEventListener("change", drawChart);
  $("#chart-group").addEventListener("change", drawChart);

  // ---- controls
  $("#filter-field").addEventListener("change", fillOperators);
  $("#filter").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = current.fields.find((x) => x.name === $("#filter-field").value);
    const op = $("#filter-op").value;
    const raw = $("#filter-value").value;
    try {
      where = !f || !op || raw.trim() === "" ? null : { [f.name]: { [op]: coerce(f, op, raw.trim()) } };
    } catch (err) { showError(err.message); return; }
    const order = $("#order-field").value;
    orderBy = order ? [{ field: order, direction: $("#order-dir").value }] : null;
    cursors = [null];
    load();
  });
  $("#clear-filter").addEventListener("click", () => {
    $("#filter-value").value = "";
    $("#order-field").value = "";
    where = null;
    orderBy = null;
    cursors = [null];
    load();
  });
  $("#page-size").addEventListener("change", () => { if (current) { cursors = [null]; load(); } });
  $("#next").addEventListener("click", () => { cursors.push($("#next").dataset.after); load(); });
  $("#prev").addEventListener("click", () => { cursors.pop(); load(); });
  $("#first-page").addEventListener("click", () => { cursors = [null]; load(); });
  for (const b of document.querySelectorAll("button.copy")) {
    b.addEventListener("click", async () => {
      const source = document.getElementById(b.dataset.target);
      try {
        await navigator.clipboard.writeText(source.textContent);
        text(b, "已复制");
      } catch (err) { // no clipboard (plain http on another host): select the text instead
        const range = document.createRange();
        range.selectNodeContents(source);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        text(b, "已选中，请按 Ctrl+C");
      }
      setTimeout(() => text(b, "复制"), 2000);
    });
  }
  window.addEventListener("hashchange", route);
  loadCatalogue();
})();
