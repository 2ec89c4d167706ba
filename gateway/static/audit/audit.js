// The audit page: a thin client of /audit/api/* (the page's machine twins). No framework, no CDN.
"use strict";
(function () {
  const $ = (sel) => document.querySelector(sel);
  const form = $("#filters"), tbody = $("#results tbody"), status = $("#status");
  // Signed in through /web/login (a session cookie, HttpOnly): no token on this page. State-changing
  // calls carry the session's CSRF token; a 401 means the session ended, so sign in again.
  let csrf = "";
  const signIn = () => { location.assign("/web/login?next=" + encodeURIComponent("/audit")); };
  const session = fetch("/web/session", { credentials: "same-origin" }).then(async (r) => {
    if (r.status === 401) { signIn(); return null; }
    const me = await r.json();
    csrf = me.csrf;
    $("#signout").elements.csrf.value = me.csrf;
    $("#who-name").textContent = (me.display_name || me.user) + (me.department ? " · " + me.department : "");
    $("#who-roles").textContent = me.roles.join(" ");
    return me;
  });
  let nextBefore = null;

  function say(text, isError) { status.textContent = text; status.className = isError ? "error" : ""; }

  function params(extra) {
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (k !== "source" && String(v).trim()) p.set(k, String(v).trim());
    for (const [k, v] of Object.entries(extra || {})) if (v !== null && v !== undefined) p.set(k, v);
    return p;
  }

  async function call(path, p, init) {
    const opts = init || {};
    const method = (opts.method || "GET").toUpperCase();
    await session;
    const headers = { ...(opts.headers || {}) };
    if (method !== "GET") headers["X-CSRF-Token"] = csrf;
    const r = await fetch(path + (p ? "?" + p : ""), { ...opts, headers, credentials: "same-origin" });
    if (r.status === 401) signIn();
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      try { msg = (await r.json()).errors[0].message; } catch (e) { /* not JSON */ }
      const err = new Error(msg);
      err.status = r.status;
      throw err;
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
      cell(tr, e.archive, "archive-col");
      // an archived event is no longer in the live table: its detail is the row the archive holds
      tr.addEventListener("click", () => (e.archive ? archivedDetail(e) : detail(e.seq)));
      tbody.appendChild(tr);
    }
  }

  // The number of matches, Chinese first. Past 10,000 the API stops counting (total_exact false):
  // "超过 10,000 条", and the button beside it asks for the exact count (exact=true, slower).
  function matches(page) {
    const n = page.total.toLocaleString("en-US");
    return page.total_exact === false
      ? "超过 " + n + " 条 · " + n + "+ events match"
      : "共 " + n + " 条 · " + n + " events match";
  }

  // The live chain (/audit/api/events) or the archives retention left (/audit/api/archive/events,
  // read in place: slower). "More" pages on in the source the first page came from.
  const archivedChosen = () => form.elements.source.value === "archived";
  function showSource() {
    const archived = archivedChosen();
    $("#archive-note").hidden = !archived;
    for (const id of ["#export-csv", "#export-json", "#stats"]) {
      $(id).disabled = archived;
      $(id).title = archived ? "仅适用于在线记录 live chain only" : "";
    }
  }
  form.elements.source.forEach((radio) => radio.addEventListener("change", () => {
    showSource();
    tbody.replaceChildren();
    nextBefore = null;
    $("#more").hidden = $("#exact").hidden = $("#archives-read").hidden = $("#detail").hidden = true;
    $("#results").classList.toggle("archived", archivedChosen());
    say("");
  }));
  form.addEventListener("reset", () => setTimeout(showSource));

  // Errors of the archive search, Chinese first; the server's own words after.
  function archiveError(err) {
    const zh = { 400: "查询条件有误", 401: "登录已失效", 403: "无权查询归档", 404: "未配置归档目录" }[err.status]
      || "归档查询失败";
    return zh + " · Archive search failed: " + err.message;
  }

  function archivesRead(page) {
    const box = $("#archives-read");
    box.hidden = false;
    const missing = page.missing || [];
    box.textContent = (page.archives.length
      ? "已读取归档 Archives read (" + page.archives.length + "): " + page.archives.join(", ")
      : missing.length ? "" : "尚无归档（从未清理过）· No archives yet: nothing has been pruned.")
      + (missing.length ? " 缺失归档（未读取）· Archives missing, not read: " + missing.join(", ") : "");
  }

  let exactAsked = false, searchedArchives = false;
  async function search(append, exact) {
    if (!append) { exactAsked = Boolean(exact); searchedArchives = archivedChosen(); }
    const archived = searchedArchives;
    try {
      say(archived ? "读取归档中（较慢）… reading the archives"
        : exactAsked && !append ? "精确计数中… counting every match" : "查询中… searching");
      const p = params({ limit: 100, before: append ? nextBefore : null,
                         exact: exactAsked && !archived ? "true" : null });
      const page = await (await call(archived ? "/audit/api/archive/events" : "/audit/api/events", p)).json();
      $("#results").classList.toggle("archived", archived);
      render(page.events, append);
      nextBefore = page.next_before;
      $("#more").hidden = nextBefore === null;
      $("#exact").hidden = archived || page.total_exact !== false;
      if (archived) archivesRead(page); else $("#archives-read").hidden = true;
      say(archived ? "归档中" + matches(page) : matches(page));
    } catch (err) {
      if (!archived) { say(err.message, true); return; }
      if (!append) { tbody.replaceChildren(); $("#more").hidden = true; $("#archives-read").hidden = true; }
      say(archiveError(err), true);
    }
  }

  function archivedDetail(e) {
    $("#detail-seq").textContent = "#" + e.seq + " · 归档 archive " + e.archive;
    $("#detail pre").textContent = JSON.stringify(e, null, 2);
    $("#detail").hidden = false;
  }

  // An ISO time as the datetime-local inputs take it: Beijing wall-clock time, no offset.
  function localInput(iso) {
    const t = new Date(new Date(iso).getTime() + 8 * 3600e3);
    return t.toISOString().slice(0, 19);
  }

  // From a dashboard panel or an alert to the events behind it: the panel's `search` filters.
  function showEvents(filters) {
    form.reset();
    for (const [k, v] of Object.entries(filters || {})) {
      const input = form.elements[k];
      if (input) input.value = (k === "from" || k === "to") ? localInput(v) : v;
    }
    search(false).then(() => $("#results-section").scrollIntoView({ block: "start" }));
  }
  window.shuqiaoAudit = { call, showEvents, localInput, session, save };

  async function detail(seq, report, reveal) {
    try {
      const doc = await (await call("/audit/api/events/" + seq)).json();
      $("#detail-seq").textContent = "#" + seq;
      $("#detail pre").textContent = JSON.stringify(doc, null, 2);
      $("#detail").hidden = false;
      if (reveal) $("#detail").scrollIntoView({ block: "start" });
    } catch (err) { (report || say)("event #" + seq + ": " + err.message, true); }
  }

  function save(blob, name) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  async function exportAs(format) {
    try {
      say("导出中… exporting");
      const r = await call("/audit/api/export", params({ format }));
      const blob = await r.blob();
      const name = (/filename="([^"]+)"/.exec(r.headers.get("content-disposition") || "") || [])[1]
        || "audit." + format;
      save(blob, name);
      // the response is SM2-signed (RFC 9421); its signature travels as a file of its own:
      // shuqiao verify-response NAME.sig --body NAME --keys-url …/keys/sm2
      const lines = ["HTTP/1.1 " + r.status];
      for (const h of ["content-type", "content-digest", "x-request-id", "signature-input", "signature"]) {
        if (r.headers.has(h)) lines.push(h + ": " + r.headers.get(h));
      }
      save(new Blob([lines.join("\r\n") + "\r\n\r\n"], { type: "text/plain" }), name + ".sig");
      say("exported " + name + " and its signature " + name + ".sig");
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

  // -- alerts: list (newest first, paged by id), acknowledge with a required comment ----------
  // Everything shown comes from requests (principal ids, addresses in summaries, comments), so
  // it is only ever set as textContent, never parsed as HTML.
  const alertForm = $("#alert-filters"), alertBody = $("#alerts tbody"), alertStatus = $("#alerts-status");
  const ALERT_PAGE = 20;
  let alertsBefore = null, alertsGen = 0;

  function sayAlerts(text, isError) { alertStatus.textContent = text; alertStatus.className = isError ? "error" : ""; }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== null && text !== undefined) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function ackForm(a) {
    const f = el("form", null, "ack");
    const input = el("input");
    input.name = "comment";
    input.required = true;
    input.maxLength = 2000;
    input.placeholder = "处理意见 comment";
    input.title = "必填 required to acknowledge";
    input.setAttribute("aria-label", "处理意见 comment for alert " + a.id);
    const button = el("button", "确认 Acknowledge");
    button.type = "submit";
    button.disabled = true;
    input.addEventListener("input", () => { button.disabled = !input.value.trim(); });
    input.addEventListener("keydown", (ev) => {  // Enter with no comment: say why nothing happens
      if (ev.key !== "Enter" || !button.disabled || input.disabled) return;
      ev.preventDefault();
      acknowledge(a.id, input, button);
    });
    f.addEventListener("submit", (ev) => { ev.preventDefault(); acknowledge(a.id, input, button); });
    f.append(input, button);
    return f;
  }

  function alertRow(a) {
    const tr = document.createElement("tr");
    const acked = Boolean(a.acknowledged_at);
    tr.dataset.id = a.id;
    tr.className = acked ? "acked" : "open";
    cell(tr, a.id);
    cell(tr, a.rule, "rule");
    cell(tr, a.principal_id, "principal");
    cell(tr, a.consumer);
    cell(tr, beijing(a.occurred_at));
    const seq = document.createElement("td");
    const link = el("button", "#" + a.seq, "link seq");
    link.type = "button";
    link.title = "打开事件 open event " + a.seq;
    link.addEventListener("click", () => detail(a.seq, sayAlerts, true));
    const around = el("button", "相关事件 events", "link events");
    around.type = "button";
    around.title = "该主体前后一小时的事件 the principal's events in the hour before";
    around.addEventListener("click", () => {
      const t = new Date(a.occurred_at);
      showEvents({ principal: a.principal_id, from: new Date(t.getTime() - 3600e3).toISOString(),
                   to: new Date(t.getTime() + 60e3).toISOString() });
    });
    seq.append(link, " ", around);
    tr.appendChild(seq);
    cell(tr, a.summary, "summary");
    cell(tr, stateText(a), "state");
    const ack = document.createElement("td");
    ack.className = "ack";
    if (acked) {
      ack.append(el("div", (a.acknowledged_by || "") + " · " + beijing(a.acknowledged_at), "ack-by"),
                 el("div", a.ack_comment, "comment"));
    } else {
      ack.appendChild(ackForm(a));
    }
    ack.appendChild(handling(a));
    tr.appendChild(ack);
    return tr;
  }

  // -- handling: assign to an officer, comment, close with a reason; the history ----------------
  const REASONS = [["resolved", "已处置 resolved"], ["false_positive", "误报 false positive"],
                   ["authorised", "已授权/已报备 authorised"], ["duplicate", "重复 duplicate"],
                   ["other", "其他 other (说明必填)"]];
  const REASON_LABEL = Object.fromEntries(REASONS);
  let officersLoaded = null;

  function stateText(a) {
    if (a.state === "assigned") return "assigned 已指派 → " + (a.assignee || "");
    if (a.state === "closed") return "closed 已关闭 · " + (REASON_LABEL[a.close_reason] || a.close_reason || "");
    return a.state === "open" ? "open 未处理" : "acknowledged 已确认";
  }

  function handling(a) {
    const d = el("details", null, "handle");
    d.appendChild(el("summary", a.state === "closed" ? "历史与评论 History" : "处理 Handle"));
    d.addEventListener("toggle", () => { if (d.open && !d.dataset.built) buildHandling(d, a); });
    return d;
  }

  function textInput(name, placeholder, label) {
    const input = el("input");
    input.name = name;
    input.maxLength = 2000;
    input.placeholder = placeholder;
    input.setAttribute("aria-label", label);
    return input;
  }

  async function buildHandling(d, a) {
    d.dataset.built = "1";
    const box = el("div", null, "handle-box");
    d.appendChild(box);
    if (a.state !== "closed") {
      const assign = el("form", null, "assign");
      const who = el("select");
      who.name = "assignee";
      who.setAttribute("aria-label", "指派给 assign alert " + a.id + " to");
      who.appendChild(el("option", "— 安全管理员 officer —")).value = "";
      const assignButton = el("button", "指派 Assign");
      assignButton.disabled = true;
      who.addEventListener("change", () => { assignButton.disabled = !who.value; });
      assign.append(who, assignButton);
      assign.addEventListener("submit", (ev) => {
        ev.preventDefault();
        alertAction(a.id, "assign", { assignee: who.value }, "已指派 assigned to " + who.value);
      });
      const close = el("form", null, "close");
      const reason = el("select");
      reason.name = "reason";
      reason.setAttribute("aria-label", "关闭原因 reason to close alert " + a.id);
      reason.appendChild(el("option", "— 关闭原因 reason —")).value = "";
      for (const [value, label] of REASONS) reason.appendChild(el("option", label)).value = value;
      const note = textInput("comment", "说明 note", "关闭说明 note for alert " + a.id);
      const closeButton = el("button", "关闭 Close");
      closeButton.disabled = true;
      const closable = () => { closeButton.disabled = !reason.value || (reason.value === "other" && !note.value.trim()); };
      reason.addEventListener("change", closable);
      note.addEventListener("input", closable);
      close.append(reason, note, closeButton);
      close.addEventListener("submit", (ev) => {
        ev.preventDefault();
        alertAction(a.id, "close", { reason: reason.value, comment: note.value.trim() },
                    "已关闭 closed: " + REASON_LABEL[reason.value]);
      });
      box.append(assign, close);
      officersLoaded = officersLoaded || call("/audit/api/officers").then((r) => r.json());
      officersLoaded.then((doc) => {
        for (const o of doc.officers) {
          who.appendChild(el("option", o.display_name ? o.username + " · " + o.display_name : o.username)).value = o.username;
        }
      }).catch((err) => { officersLoaded = null; sayAlerts(err.message, true); });
    }
    const comment = el("form", null, "comment-form");
    const words = textInput("comment", "评论 comment", "评论 comment on alert " + a.id);
    const commentButton = el("button", "评论 Comment");
    commentButton.disabled = true;
    words.addEventListener("input", () => { commentButton.disabled = !words.value.trim(); });
    comment.append(words, commentButton);
    comment.addEventListener("submit", (ev) => {
      ev.preventDefault();
      alertAction(a.id, "comment", { comment: words.value.trim() }, "已评论 comment added");
    });
    const history = el("ol", null, "history");
    history.setAttribute("aria-label", "告警 #" + a.id + " 处理记录 history");
    box.append(comment, history);
    try {
      const doc = await (await call("/audit/api/alerts/" + a.id)).json();
      for (const h of doc.history) {
        const what = [h.action, h.to_state !== h.from_state ? h.from_state + "→" + h.to_state : "",
                      h.assignee ? "→ " + h.assignee : "", h.reason ? REASON_LABEL[h.reason] || h.reason : ""];
        const li = el("li");
        li.append(el("span", beijing(h.at) + " · " + h.by + " · " + what.filter(Boolean).join(" "), "ack-by"));
        if (h.comment) li.append(el("div", h.comment, "comment"));
        history.appendChild(li);
      }
    } catch (err) { sayAlerts(err.message, true); }
  }

  async function alertAction(id, action, body, done) {
    try {
      await call("/audit/api/alerts/" + id + "/" + action, null, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      const shown = await loadAlerts(false);
      sayAlerts("告警 #" + id + " " + done + (shown ? " · " + shown : ""));
    } catch (err) {
      if (err.status === 404 || err.status === 409) await loadAlerts(false);  // the list was stale
      sayAlerts("告警 #" + id + ": " + err.message, true);
    }
  }

  // Returns a one-line summary of what is shown, or null if the list could not be loaded.
  async function loadAlerts(append) {
    const gen = ++alertsGen;
    const clear = () => { alertBody.replaceChildren(); alertsBefore = null; $("#alerts-more").hidden = true; };
    const p = new URLSearchParams({ state: alertForm.elements.state.value, limit: ALERT_PAGE });
    if (alertForm.elements.rule.value) p.set("rule", alertForm.elements.rule.value);
    if (append && alertsBefore !== null) p.set("before", alertsBefore);
    $("#alerts").setAttribute("aria-busy", "true");
    try {
      if (!append) sayAlerts("加载中… loading alerts");
      const page = await (await call("/audit/api/alerts", p)).json();
      if (gen !== alertsGen) return null;  // a newer load (other filter, a refresh) replaced this one
      if (!append) clear();
      for (const a of page.alerts) alertBody.appendChild(alertRow(a));
      alertsBefore = page.next_before;
      $("#alerts-more").hidden = alertsBefore === null;
      const n = alertBody.rows.length;
      const label = { open: "open alerts", acknowledged: "acknowledged alerts", assigned: "assigned alerts",
                      closed: "closed alerts", active: "alerts not closed", all: "alerts" }[p.get("state")];
      const shown = (n === 0 ? "no " + label : n + " " + label + " shown")
        + (alertsBefore === null ? "" : ", more available");
      sayAlerts(shown);
      return shown;
    } catch (err) {
      if (gen !== alertsGen) return null;
      if (!append) clear();  // not a stale list under an error (e.g. a token without audit:read)
      sayAlerts(err.message, true);
      return null;
    } finally {
      if (gen === alertsGen) $("#alerts").setAttribute("aria-busy", "false");
    }
  }

  async function acknowledge(id, input, button) {
    const comment = input.value.trim();
    if (!comment) {
      sayAlerts("告警 #" + id + ": 请填写处理意见 — a comment is required to acknowledge.", true);
      input.focus();
      return;
    }
    input.disabled = button.disabled = true;
    try {
      await call("/audit/api/alerts/" + id + "/ack", null, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ comment }),
      });
      const shown = await loadAlerts(false);
      sayAlerts("告警 #" + id + " 已确认 acknowledged" + (shown ? " · " + shown : ""));
    } catch (err) {
      const msg = "告警 #" + id + " 未确认 not acknowledged: " + err.message;
      if (err.status === 404 || err.status === 409) await loadAlerts(false);  // the list was stale
      input.disabled = false;
      button.disabled = !input.value.trim();
      sayAlerts(msg, true);
    }
  }

  alertForm.addEventListener("submit", (ev) => { ev.preventDefault(); loadAlerts(false); });
  alertForm.addEventListener("change", () => loadAlerts(false));
  $("#alerts-more").addEventListener("click", () => loadAlerts(true));
  loadAlerts(false);

  form.addEventListener("submit", (ev) => { ev.preventDefault(); search(false); });
  $("#more").addEventListener("click", () => search(true));
  $("#exact").addEventListener("click", () => search(false, true));
  $("#export-csv").addEventListener("click", () => exportAs("csv"));
  $("#export-json").addEventListener("click", () => exportAs("json"));
  $("#stats").addEventListener("click", stats);
  $("#verify").addEventListener("click", verify);
})();
