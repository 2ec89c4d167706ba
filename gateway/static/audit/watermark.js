// 数据水印溯源: the officers' page for POST /audit/api/watermark/trace (its machine twin; the CLI is
// `shuqiao watermark trace`). Upload a leak or paste rows; see the likely recipients, the deliveries
// (audit events) that match, and download the SM2-signed report. No framework, no CDN.
"use strict";
(function () {
  const $ = (sel) => document.querySelector(sel);
  const form = $("#wm-form"), status = $("#wm-status");
  let csrf = "";
  const signIn = () => { location.assign("/web/login?next=" + encodeURIComponent("/audit/watermark")); };
  const session = fetch("/web/session", { credentials: "same-origin" }).then(async (r) => {
    if (r.status === 401) { signIn(); return null; }
    const me = await r.json();
    csrf = me.csrf;
    $("#signout").elements.csrf.value = me.csrf;
    $("#who-name").textContent = (me.display_name || me.user) + (me.department ? " · " + me.department : "");
    $("#who-roles").textContent = me.roles.join(" ");
    return me;
  });
  const beijing = (iso) => new Date(iso.replace(" ", "T")).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false });
  const prob = (p) => (p === 0 ? "0" : Number(p).toPrecision(2));
  let urls = [];

  function say(text, isError) { status.textContent = text; status.className = isError ? "error" : ""; }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== null && text !== undefined) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function row(tbody, cells) {
    const tr = document.createElement("tr");
    for (const c of cells) {
      const td = document.createElement("td");
      if (c instanceof Node) td.append(c); else td.textContent = c === null || c === undefined ? "" : String(c);
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
    return tr;
  }

  async function openEvent(seq) {
    try {
      const r = await fetch("/audit/api/events/" + seq, { credentials: "same-origin" });
      if (r.status === 401) { signIn(); return; }
      if (!r.ok) throw new Error(r.status + " " + r.statusText);
      const doc = await r.json();
      $("#wm-event-seq").textContent = "#" + seq;
      $("#wm-event pre").textContent = JSON.stringify(doc, null, 2);
      $("#wm-event").hidden = false;
      $("#wm-event").scrollIntoView();
    } catch (err) { say("event #" + seq + ": " + err.message, true); }
  }

  function download(anchor, text, name, type) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    urls.push(url);
    anchor.href = url;
    anchor.download = name;
  }

  function render(doc) {
    const report = doc.report, ev = doc.evidence;
    for (const u of urls) URL.revokeObjectURL(u);
    urls = [];
    const id = report.identified;
    const verdict = $("#wm-verdict");
    verdict.replaceChildren();
    if (id) {
      verdict.append("识别为 Identified: ", el("strong", id.recipient, "recipient"),
        " — " + id.matching_bits + "/" + id.marked_cells + " 位吻合 bits match; 误匹配概率 false-match probability " +
        prob(id.false_match_probability) + "，校正后 adjusted " + prob(id.false_match_probability_adjusted));
      verdict.className = "identified";
    } else {
      verdict.textContent = "未能识别接收方 No recipient identified (no adjusted false-match probability ≤ 10⁻⁶).";
      verdict.className = "unidentified";
    }
    download($("#wm-report"), ev.report, ev.filename, "application/json");
    download($("#wm-signature"), ev.signature, ev.filename + ".sig", "text/plain");
    $("#wm-verify").textContent = ev.verify;

    const matched = $("#wm-matched tbody");
    matched.replaceChildren();
    for (const m of report.matched) {
      const cols = Object.entries(m.columns).map(([f, c]) => f + " ← " + c + " (" + m.matched_by[f] + ")").join("; ");
      row(matched, [m.dataset, m.key_column, cols, m.problem]);
    }
    const cands = $("#wm-candidates tbody");
    cands.replaceChildren();
    for (const c of report.recipients) {
      const tr = row(cands, [c.recipient, c.kid, c.matching_bits + "/" + c.marked_cells,
        prob(c.false_match_probability), prob(c.false_match_probability_adjusted)]);
      tr.dataset.recipient = c.recipient;
      if (id && c.recipient === id.recipient && c.kid === id.kid) tr.className = "identified";
    }
    const deliveries = $("#wm-deliveries tbody");
    deliveries.replaceChildren();
    for (const d of (id ? id.deliveries : [])) {
      const link = el("a", "#" + d.seq, "seq");
      link.href = "/audit/api/events/" + d.seq;
      link.title = "打开事件 open event " + d.seq;
      link.addEventListener("click", (e) => { e.preventDefault(); openEvent(d.seq); });
      const tr = row(deliveries, [link, beijing(d.occurred_at), d.principal_id, d.dataset, d.rows, d.request_id,
        d.watermark_id]);
      tr.dataset.seq = d.seq;
    }
    $("#wm-result").hidden = false;
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const file = $("#wm-file").files[0];
    const pasted = $("#wm-pasted").value;
    if (!file && !pasted.trim()) { say("请选择文件或粘贴数据 Choose a file or paste rows.", true); return; }
    const body = file || new Blob([pasted], { type: "text/plain; charset=utf-8" });
    const p = new URLSearchParams();
    const dataset = $("#wm-dataset").value.trim();
    if (dataset) p.set("dataset", dataset);
    say("溯源中… tracing");
    $("#wm-trace").disabled = true;
    try {
      await session;
      const r = await fetch("/audit/api/watermark/trace" + (dataset ? "?" + p : ""), {
        method: "POST", body, credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf, "Content-Type": (file && file.type) || "application/octet-stream" },
      });
      if (r.status === 401) { signIn(); return; }
      if (!r.ok) {
        let msg = r.status + " " + r.statusText;
        try { msg = (await r.json()).errors[0].message; } catch (err) { /* not JSON */ }
        throw new Error(msg);
      }
      const doc = await r.json();
      render(doc);
      const id = doc.report.identified;
      say("已读取 " + doc.report.rows_read + " 行 rows read; " +
          (id ? "识别为 identified: " + id.recipient + "，" + id.deliveries.length + " 次交付 deliveries"
              : "未能识别 not identified"));
    } catch (err) {
      say("溯源失败 Trace failed: " + err.message, true);
    } finally {
      $("#wm-trace").disabled = false;
    }
  });
})();
