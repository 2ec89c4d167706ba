// 态势感知: the dashboard of /audit, drawn from GET /audit/api/posture (each panel's JSON twin is
// /audit/api/posture/{panel}). SVG drawn here, no chart library, no CDN. Every number links to the
// events behind it (the panel's `search` filters) where there are events to show.
"use strict";
(function () {
  const A = window.shuqiaoAudit;
  const $ = (sel) => document.querySelector(sel);
  const SVG = "http://www.w3.org/2000/svg";
  const periodForm = $("#period"), status = $("#posture-status");
  const COLORS = { ok: "#2f6fb0", refused: "#c0392b", lt_1h: "#c0392b", lt_24h: "#e67e22", lt_7d: "#f1c40f",
                   older: "#7f8c8d", reads: "#8e44ad" };
  const AGE = [["lt_1h", "<1小时"], ["lt_24h", "<1天"], ["lt_7d", "<7天"], ["older", "更早 older"]];
  const beijing = (iso) => iso ? new Date(iso).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false }) : "—";

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== null && text !== undefined) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function stat(key, value, label, onClick) {
    const box = el(onClick ? "button" : "div", null, "stat" + (onClick ? " link" : ""));
    if (onClick) { box.type = "button"; box.addEventListener("click", onClick); }
    const n = el("span", value, "num");
    n.dataset.k = key;
    box.append(n, el("span", label, "label"));
    return box;
  }

  // Horizontal stacked bars: rows [{label, parts: {series: value}, total, onClick}], one row each.
  function bars(rows, series, legend) {
    const wrap = el("div", null, "chart");
    if (!rows.length) { wrap.appendChild(el("p", "无 none", "empty")); return wrap; }
    const rowH = 22, labelW = 150, width = 460, barW = width - labelW - 60;
    const max = Math.max(1, ...rows.map((r) => r.total));
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${rows.length * rowH + 4}`);
    svg.setAttribute("role", "img");
    rows.forEach((r, i) => {
      const g = document.createElementNS(SVG, "g");
      g.setAttribute("transform", `translate(0 ${i * rowH + 2})`);
      const title = document.createElementNS(SVG, "title");
      title.textContent = r.label + ": " + series.map((s) => (legend[s] || s) + " " + (r.parts[s] || 0)).join(", ");
      g.appendChild(title);
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", labelW - 6); label.setAttribute("y", 15); label.setAttribute("text-anchor", "end");
      label.textContent = r.label.length > 22 ? r.label.slice(0, 21) + "…" : r.label;
      g.appendChild(label);
      let x = labelW;
      for (const s of series) {
        const w = ((r.parts[s] || 0) / max) * barW;
        if (w <= 0) continue;
        const rect = document.createElementNS(SVG, "rect");
        rect.setAttribute("x", x); rect.setAttribute("y", 3); rect.setAttribute("width", Math.max(w, 1));
        rect.setAttribute("height", rowH - 6); rect.setAttribute("fill", COLORS[s] || "#555");
        g.appendChild(rect);
        x += w;
      }
      const value = document.createElementNS(SVG, "text");
      value.setAttribute("x", x + 4); value.setAttribute("y", 15);
      value.textContent = r.total;
      g.appendChild(value);
      if (r.onClick) { g.classList.add("clickable"); g.addEventListener("click", r.onClick); }
      svg.appendChild(g);
    });
    wrap.appendChild(svg);
    const key = el("div", null, "legend");
    for (const s of series) {
      const item = el("span", legend[s] || s);
      item.style.setProperty("--c", COLORS[s] || "#555");
      key.appendChild(item);
    }
    wrap.appendChild(key);
    return wrap;
  }

  function list(items, render) {
    const ul = el("ul", null, "items");
    if (!items.length) ul.appendChild(el("li", "无 none", "empty"));
    for (const it of items) ul.appendChild(render(it));
    return ul;
  }

  function linkItem(text, filters) {
    const li = el("li");
    const b = el("button", text, "link");
    b.type = "button";
    b.addEventListener("click", () => A.showEvents(filters));
    li.appendChild(b);
    return li;
  }

  const show = (filters) => () => A.showEvents(filters);

  function body(panel) {
    const box = $(`#panel-${panel} .body`);
    box.replaceChildren();
    return box;
  }

  function traffic(t, doc) {
    const box = body("traffic");
    const stats = el("div", null, "stats");
    stats.append(stat("traffic.total.requests", t.total.requests, "请求 requests", show({ from: doc.from, to: doc.to })),
                 stat("traffic.total.refused", t.total.refused, "拒绝 refused", show({ from: doc.from, to: doc.to })));
    box.appendChild(stats);
    const legend = { ok: "成功 served", refused: "拒绝 refused" };
    box.appendChild(el("h4", "按层级 By tier"));
    box.appendChild(bars(t.by_tier.map((r) => ({
      label: r.tier, total: r.requests, parts: { ok: r.requests - r.refused, refused: r.refused },
      onClick: show({ from: doc.from, to: doc.to, tier: r.tier }),
    })), ["ok", "refused"], legend));
    box.appendChild(el("h4", "按部门 By department"));
    box.appendChild(bars(t.by_department.slice(0, 12).map((r) => ({
      label: r.department || "(匿名 anonymous)", total: r.requests,
      parts: { ok: r.requests - r.refused, refused: r.refused },
      onClick: r.department ? show({ from: doc.from, to: doc.to, department: r.department }) : null,
    })), ["ok", "refused"], legend));
  }

  function sensitive(s) {
    const box = body("sensitive");
    const stats = el("div", null, "stats");
    stats.append(stat("sensitive.field_reads", s.field_reads, "次敏感信息项读取 sensitive field reads"),
                 stat("sensitive.consumers", new Set(s.by_consumer_purpose.map((g) => g.consumer)).size, "个使用方 consumers"));
    box.appendChild(stats);
    box.appendChild(bars(s.by_consumer_purpose.slice(0, 12).map((g) => ({
      label: (g.consumer || "?") + " · " + (g.purpose || "未声明 no purpose"), total: g.field_reads,
      parts: { reads: g.field_reads }, onClick: show(g.search),
    })), ["reads"], { reads: "读取 reads (L3/L4/个人信息)" }));
  }

  function alerts(a) {
    const box = body("alerts");
    const stats = el("div", null, "stats");
    stats.appendChild(stat("alerts.open", a.open, "条未处理 open", () => pickRule("")));
    box.appendChild(stats);
    const legend = Object.fromEntries(AGE);
    box.appendChild(bars(a.by_rule.map((r) => ({
      label: r.rule, total: r.open, parts: r, onClick: () => pickRule(r.rule),
    })), AGE.map(([k]) => k), legend));
  }

  function pickRule(rule) {
    const f = $("#alert-filters");
    f.elements.state.value = "open";
    f.elements.rule.value = rule;
    f.dispatchEvent(new Event("change"));
    $("#alerts-section").scrollIntoView({ block: "start" });
  }

  function grants(g) {
    const box = body("grants");
    const stats = el("div", null, "stats");
    stats.appendChild(stat("grants.expiring", g.expiring.length, `项 ${g.warning_days} 天内到期 expire within ${g.warning_days} days`));
    box.appendChild(stats);
    box.appendChild(list(g.expiring.slice(0, 10), (x) => el("li",
      `#${x.id} ${x.consumer} → ${x.dataset} (${x.tier}) · ${x.days_left} 天 days · ${x.purpose || ""}`)));
  }

  function unusual(u, doc) {
    const box = body("unusual");
    const stats = el("div", null, "stats");
    const sum = (xs, k) => xs.reduce((n, x) => n + x[k], 0);
    stats.append(stat("unusual.volume_above_baseline", u.volume_above_baseline.length, "个使用方超出基线 above baseline"),
                 stat("unusual.first_access", u.first_access.length, "次首次访问 first access"),
                 stat("unusual.off_hours_l4", sum(u.off_hours_l4, "alerts"), "次非工作时间L4 off-hours L4", () => pickRule("l4_out_of_hours")),
                 stat("unusual.forbidden_probes", sum(u.forbidden_probes, "refusals"), "次越权字段探测 forbidden probes"));
    box.appendChild(stats);
    box.appendChild(el("h4", "越权探测 Probing (FORBIDDEN_FIELD)"));
    box.appendChild(list(u.forbidden_probes.slice(0, 6), (p) => linkItem(`${p.principal} (${p.consumer || "-"}): ${p.refusals}`, p.search)));
    box.appendChild(el("h4", "超出基线 Volume above baseline"));
    box.appendChild(list(u.volume_above_baseline.slice(0, 6), (v) => linkItem(`${v.consumer}: ${v.requests} (基线 baseline ${v.baseline})`, v.search)));
    box.appendChild(el("h4", "首次访问 First access to a dataset"));
    box.appendChild(list(u.first_access.slice(0, 6), (f) => linkItem(`${f.consumer} → ${f.dataset} · ${beijing(f.first_at)}`, f.search)));
  }

  function chain(c) {
    const box = body("chain");
    const stats = el("div", null, "stats");
    stats.append(stat("chain.head_seq", c.head_seq, "事件总序号 head seq"),
                 stat("chain.checkpoint_lag", c.checkpoint_lag, "未签名检查点 events since checkpoint"),
                 stat("chain.index_lag", c.index_lag, "索引滞后 index lag"));
    box.appendChild(stats);
    const dl = el("dl");
    const stale = !c.last_verified || (Date.now() - new Date(c.last_verified.at).getTime()) > 24 * 3600e3;
    dl.append(el("dt", "最近检查点 Last checkpoint"), el("dd", c.last_checkpoint ? "#" + c.last_checkpoint.seq + " · " + beijing(c.last_checkpoint.at) : "—"),
              el("dt", "最近校验 Last verified"), el("dd", c.last_verified ? "#" + c.last_verified.seq + " · " + beijing(c.last_verified.at) : "从未 never", stale ? "warn" : ""));
    box.appendChild(dl);
  }

  function period() {
    const p = new URLSearchParams();
    for (const k of ["from", "to"]) if (periodForm.elements[k].value) p.set(k, periodForm.elements[k].value);
    return p;
  }

  async function load() {
    try {
      status.textContent = "加载中… loading";
      status.className = "";
      const doc = await (await A.call("/audit/api/posture", period())).json();
      traffic(doc.traffic, doc); sensitive(doc.sensitive); alerts(doc.alerts);
      grants(doc.grants); unusual(doc.unusual, doc); chain(doc.chain);
      status.textContent = beijing(doc.from) + " — " + beijing(doc.to) + "（北京时间 Beijing time）";
      document.body.dataset.postureLoaded = "1";
    } catch (err) {
      status.textContent = err.message;
      status.className = "error";
    }
  }

  // -- the consumer view: what one department or enterprise read, beside the grants it read under
  function row(tbody, values) {
    const tr = document.createElement("tr");
    for (const v of values) tr.appendChild(el("td", v));
    tbody.appendChild(tr);
    return tr;
  }

  const grantText = (g) => g.status === "unknown" ? "#" + g.id + " (不存在 unknown)"
    : `#${g.id} ${g.purpose || ""} · ${g.status}${g.revoked_at ? " 已撤销 revoked" : ""} · 至 until ${g.expires_at ? beijing(g.expires_at) : "—"}`;

  async function consumerView(code) {
    const say = $("#consumer-status");
    try {
      say.textContent = "加载中… loading"; say.className = "";
      const p = period();
      p.set("code", code);
      const doc = await (await A.call("/audit/api/consumer", p)).json();
      const stats = $("#consumer-stats");
      stats.replaceChildren(stat("consumer.requests", doc.requests, "请求 requests", show(doc.search)),
                            stat("consumer.refused", doc.refused, "拒绝 refused"),
                            stat("consumer.rows", doc.rows, "行 rows read"),
                            stat("consumer.grants", doc.grants.length, "项授权 grants"));
      const ds = $("#consumer-datasets tbody"); ds.replaceChildren();
      for (const d of doc.datasets) {
        const fields = Object.entries(d.fields).map(([f, by]) => f + " " + Object.entries(by).map(([a, n]) => a + "×" + n).join("/")).join(", ");
        row(ds, [d.dataset, d.events, d.rows, d.purposes.join("; "), d.grant_ids.map((i) => "#" + i).join(" "), fields]);
      }
      const rs = $("#consumer-reads tbody"); rs.replaceChildren();
      for (const r of doc.reads) {
        const tr = row(rs, [r.seq, beijing(r.occurred_at), r.principal, r.dataset, r.rows, r.purpose || "",
                            r.grants.map(grantText).join("; ") || "无授权 no grant"]);
        tr.addEventListener("click", () => A.showEvents({ ...doc.search, from: r.occurred_at, to: new Date(new Date(r.occurred_at).getTime() + 1000).toISOString() }));
      }
      $("#consumer-out").hidden = false;
      say.textContent = `${doc.consumer}: ${beijing(doc.from)} — ${beijing(doc.to)}`;
    } catch (err) { say.textContent = err.message; say.className = "error"; }
  }
  $("#consumer-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    consumerView($("#consumer-form").elements.code.value.trim());
  });

  // -- an investigation as a signed bundle (GET /audit/api/bundle): verifies offline with
  // `shuqiao audit verify-archive FILE --pubkey gateway.pub.pem`
  async function exportBundle(params, say) {
    try {
      say.textContent = "导出中… exporting"; say.className = "";
      const r = await A.call("/audit/api/bundle", params);
      const name = (/filename="([^"]+)"/.exec(r.headers.get("content-disposition") || "") || [])[1]
        || "audit-bundle.jsonl";
      A.save(await r.blob(), name);
      say.textContent = `已导出签名包 signed bundle saved: ${name} — shuqiao audit verify-archive ${name} --pubkey gateway.pub.pem`;
    } catch (err) { say.textContent = err.message; say.className = "error"; }
  }
  $("#consumer-bundle").addEventListener("click", () => {
    const code = $("#consumer-form").elements.code.value.trim();
    if (!code) { $("#consumer-form").reportValidity(); return; }
    const p = period();
    p.set("view", "consumer");
    p.set("code", code);
    exportBundle(p, $("#consumer-status"));
  });
  $("#person-bundle").addEventListener("click", () => {
    const id = $("#person-form").elements.id_number.value.trim();
    if (!id) { $("#person-form").reportValidity(); return; }
    exportBundle(new URLSearchParams({ view: "person", id_number: id }), $("#person-status"));
  });

  // -- the person view: every read of one 身份证号's records (a citizen's data-access inquiry)
  $("#person-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const say = $("#person-status"), table = $("#person-reads"), body = $("#person-reads tbody");
    try {
      say.textContent = "查询中… searching"; say.className = "";
      const p = new URLSearchParams({ id_number: $("#person-form").elements.id_number.value.trim() });
      const doc = await (await A.call("/audit/api/person", p)).json();
      body.replaceChildren();
      for (const r of doc.reads) {
        const tr = row(body, [r.seq, beijing(r.occurred_at), r.consumer || "", r.principal, r.dataset, r.rows,
                              r.purpose || "", r.grant_ids.map((i) => "#" + i).join(" ")]);
        tr.addEventListener("click", () => A.showEvents({ principal: r.principal, from: r.occurred_at,
          to: new Date(new Date(r.occurred_at).getTime() + 1000).toISOString() }));
      }
      table.hidden = false;
      say.textContent = `${doc.reads.length} 次读取 reads · ${doc.consumers.length} 个使用方 consumers (${doc.consumers.join(", ")}) · ${beijing(doc.from)} — ${beijing(doc.to)}`;
    } catch (err) { say.textContent = err.message; say.className = "error"; }
  });

  function lastDays(days) {
    const now = new Date();
    periodForm.elements.from.value = A.localInput(new Date(now.getTime() - days * 86400e3).toISOString());
    periodForm.elements.to.value = "";
    load();
  }

  periodForm.addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  for (const b of periodForm.querySelectorAll("button[data-days]")) {
    b.addEventListener("click", () => lastDays(Number(b.dataset.days)));
  }
  lastDays(1);
})();
