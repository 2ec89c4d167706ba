// The audit page: a thin client of /audit/api/* (the page's machine twins). No framework, no CDN.
"use strict";
(function () {
  const $ = (sel) => document.querySelector(sel);
  const form = $("#filters"), tbody = $("#results tbody"), status = $("#status"), token = $("#token");
  token.value = sessionStorage.getItem("shuqiao-audit-token") || "";
  token.addEventListener("change", () => sessionStorage.setItem("shuqiao-audit-token", token.value.trim()));
  let nextBefore = null;

  function say(text, isError) { status.textContent = text; status.className = isError ? "error" : ""; }

  function params(extra) {
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (String(v).trim()) p.set(k, String(v).trim());
    for (const [k, v] of Object.entries(extra || {})) if (v !== null && v !== undefined) p.set(k, v);
    return p;
  }

  async function call(path, p) {
    const r = await fetch(path + (p ? "?" + p : ""), {
      headers: { Authorization: "Bearer " + token.value.trim() },
    });
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      try { msg = (await r.json()).errors[0].message; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    return r;
  }

  const beijing = (iso) => new Date(iso).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false });

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
  }

  function render(events, append) {
    if (!append) tbody.replaceChildren();
    for (const e of events) {
      const tr = document.createElement("tr");
      tr.dataset.seq = e.seq;
      cell(tr, e.seq);
      cell(tr, beijing(e.occurred_at));
      cell(tr, e.tier);
      cell(tr, e.principal_id);
      cell(tr, e.department);
      cell(tr, e.operation_name || e.operation_type);
      cell(tr, e.status, e.status >= 400 ? "err" : "");
      cell(tr, e.row_count);
      const fields = e.fields.map((f) => f.dataset + "." + f.field + ":" + f.action).join(" ");
      cell(tr, fields, e.fields.some((f) => f.action === "deny") ? "deny" : "");
      cell(tr, e.error_codes.join(" "), e.error_codes.length ? "err" : "");
      tr.addEventListener("click", () => detail(e.seq));
      tbody.appendChild(tr);
    }
  }

  async function search(append) {
    try {
      say("查询中… searching");
      const p = params({ limit: 100, before: append ? nextBefore : null });
      const page = await (await call("/audit/api/events", p)).json();
      render(page.events, append);
      nextBefore = page.next_before;
      $("#more").hidden = nextBefore === null;
      say(page.total + " events match");
    } catch (err) { say(err.message, true); }
  }

  async function detail(seq) {
    try {
      const doc = await (await call("/audit/api/events/" + seq)).json();
      $("#detail-seq").textContent = "#" + seq;
      $("#detail pre").textContent = JSON.stringify(doc, null, 2);
      $("#detail").hidden = false;
    } catch (err) { say(err.message, true); }
  }

  async function exportAs(format) {
    try {
      say("导出中… exporting");
      const r = await call("/audit/api/export", params({ format }));
      const blob = await r.blob();
      const name = (/filename="([^"]+)"/.exec(r.headers.get("content-disposition") || "") || [])[1]
        || "audit." + format;
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = name;
      document.body.appendChild(a);
      a.click();
      setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
      say("exported " + name);
    } catch (err) { say(err.message, true); }
  }

  async function stats() {
    try {
      const s = await (await call("/audit/api/stats", params())).json();
      const box = $("#stats-out div");
      box.replaceChildren();
      const table = (title, head, rows) => {
        const h = document.createElement("h3"); h.textContent = title; box.appendChild(h);
        const t = document.createElement("table");
        const tr = document.createElement("tr");
        for (const x of head) { const th = document.createElement("th"); th.textContent = x; tr.appendChild(th); }
        t.appendChild(tr);
        for (const r of rows) { const row = document.createElement("tr"); r.forEach((v) => cell(row, v)); t.appendChild(row); }
        box.appendChild(t);
      };
      table("按部门 By department", ["department", "events", "rows", "refused"],
        s.departments.map((d) => [d.department, d.events, d.rows, d.refused]));
      table("按数据集 By dataset", ["dataset", "decisions"],
        s.datasets.map((d) => [d.dataset, Object.entries(d.events_by_decision).map(([k, v]) => k + " " + v).join(", ")]));
      $("#stats-out").hidden = false;
    } catch (err) { say(err.message, true); }
  }

  async function verify() {
    try {
      const v = await (await call("/audit/api/verify")).json();
      say(v.ok ? "chain verified: " + v.events_checked + " events"
               : "CHAIN BROKEN at seq " + v.first_bad_seq + ": " + v.reason, !v.ok);
    } catch (err) { say(err.message, true); }
  }

  form.addEventListener("submit", (ev) => { ev.preventDefault(); search(false); });
  $("#more").addEventListener("click", () => search(true));
  $("#export-csv").addEventListener("click", () => exportAs("csv"));
  $("#export-json").addEventListener("click", () => exportAs("json"));
  $("#stats").addEventListener("click", stats);
  $("#verify").addEventListener("click", verify);
})();
