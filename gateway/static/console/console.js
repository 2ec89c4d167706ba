// The sharing console: a thin client of POST /admin/graphql (the machine twin). No framework, no CDN.
// Signed in through /web/login (a session cookie, HttpOnly): no token on this page; every call
// carries the session's CSRF token. What may be done is decided by the server: the buttons shown
// for an application are its `nextSteps`.
"use strict";
(function () {
  const { $, el, td, empty, day, through } = window.ShuqiaoPage;
  let me = null;
  const page = window.ShuqiaoPage.start("/console", (who) => {
    me = who;
    $("#who-name").textContent = (me.display_name || me.user) + (me.department ? " · " + me.department : "");
    $("#who-roles").textContent = me.roles.join(" ");
  });
  const { session, signIn, say, gql, act, track } = page;
  const steward = () => me && me.roles.some((r) => r === "steward" || r === "admin");

  const beijing = (iso) => iso ? new Date(iso).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false }) : "";
  const fieldList = (fs) => (fs || []).map((f) => f.name + ":" + f.treatment).join(" ");

  // Only the newest load of a view renders: a slower, older answer (e.g. the load before an
  // approval) must not overwrite a newer one.
  const seq = {};
  function latest(view) { const n = (seq[view] = (seq[view] || 0) + 1); return () => seq[view] === n; }

  // ------------------------------------------------------------ tabs
  const loaders = {};
  function show(name) {
    for (const b of document.querySelectorAll("#tabs button")) b.setAttribute("aria-selected", String(b.dataset.tab === name));
    for (const s of document.querySelectorAll("section.tab")) s.hidden = s.id !== "tab-" + name;
    history.replaceState(null, "", "#" + name);
    loaders[name]();
  }
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => show(b.dataset.tab));

  // ------------------------------------------------------------ my applications
  const APP = `id tier consumer applicant provider dataset fields { name treatment } purpose legalBasis
    periodStart periodEnd state createdAt submittedAt decidedAt decidedBy decisionReason
    approvedFields { name treatment } approvedEnd grantId nextSteps`;
  let applicable = [];

  function renderFields() {
    const form = $("#apply-form"), box = $("#apply-fields");
    box.replaceChildren();
    const ds = applicable.find((d) => d.code === form.elements.dataset.value);
    if (!ds) return;
    for (const f of ds.fields) {
      const sel = el("select", { name: "treatment", "aria-label": f.name + " treatment" });
      for (const t of f.treatments) sel.append(el("option", { value: t, text: t }));
      box.append(el("label", { class: "field", "data-name": f.name },
        el("input", { type: "checkbox", name: "field", value: f.name }),
        el("span", { text: f.title + " " + f.graphqlName + " (" + f.level + ")" }), sel));
    }
  }

  async function loadApplicable() {
    if (applicable.length) return;
    const data = await gql("{ applicableDatasets { code name provider fields { name graphqlName title level treatments } } }");
    applicable = data.applicableDatasets;
    const sel = $("#apply-form").elements.dataset;
    sel.replaceChildren();
    for (const d of applicable) sel.append(el("option", { value: d.code, text: d.name + " " + d.code + " (" + d.provider + ")" }));
    renderFields();
  }
  $("#apply-form").elements.dataset.addEventListener("change", renderFields);
  const end = $("#apply-form").elements.periodEnd;
  end.value = new Date(Date.now() + 365 * 864e5).toISOString().slice(0, 10);

  $("#apply-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const form = ev.target, f = form.elements;
    const fields = [...document.querySelectorAll("#apply-fields .field")]
      .filter((l) => $("input", l).checked)
      .map((l) => ({ name: l.dataset.name, treatment: $("select", l).value }));
    if (!fields.length) { say("请选择信息项 Choose at least one field", true); return; }
    const input = {
      dataset: f.dataset.value, fields, purpose: f.purpose.value, legalBasis: f.legalBasis.value,
      periodEnd: f.periodEnd.value, periodStart: f.periodStart.value || null, submit: f.submit.checked,
    };
    act("提交申请 Apply", async () => {
      const d = await gql(`mutation($input: CreateApplicationInput!) { createApplication(input: $input) { id state } }`, { input });
      return "申请 #" + d.createApplication.id + " " + d.createApplication.state;
    }, loaders.apps);
  });

  async function showHistory(id) {
    const d = await gql(`query($id: Int!) { application(id: $id) { id history { at actor organisation step fromState toState reason } } }`, { id });
    const box = $("#history"), ol = $("ol", box);
    $("#history-id").textContent = "#" + id;
    ol.replaceChildren(...d.application.history.map((h) =>
      el("li", { text: beijing(h.at) + " " + h.actor + (h.organisation ? " (" + h.organisation + ")" : "") + " " +
        h.step + ": " + (h.fromState || "—") + " → " + h.toState + (h.reason ? " · " + h.reason : "") })));
    box.hidden = false;
  }

  const STEP_LABEL = { submit: "提交 Submit", resubmit: "重新提交 Resubmit", withdraw: "撤回 Withdraw" };
  async function loadApps() {
    loadApplicable().catch((err) => say(err.message, true));
    const current = latest("apps");
    const data = await gql(`{ myApplications { ${APP} } }`);
    if (!current()) return;
    const tbody = $("#apps tbody");
    tbody.replaceChildren();
    for (const a of data.myApplications) {
      const actions = el("td", { class: "actions" });
      actions.append(el("button", { type: "button", class: "link history", text: "历程 History", onclick: () => showHistory(a.id).catch((err) => say(err.message, true)) }));
      const note = el("input", { class: "reason", placeholder: "说明 note / reason" });
      let noted = false;
      for (const step of a.nextSteps) {
        if (!STEP_LABEL[step]) continue;
        if (!noted) { actions.append(note); noted = true; }
        actions.append(el("button", { type: "button", class: step, text: STEP_LABEL[step], onclick: () => act(STEP_LABEL[step], () =>
          step === "withdraw"
            ? gql(`mutation($id: Int!, $r: String) { withdrawApplication(id: $id, reason: $r) { id } }`, { id: a.id, r: note.value || null })
            : gql(`mutation($id: Int!, $n: String) { submitApplication(id: $id, note: $n) { id } }`, { id: a.id, n: note.value || null }),
        loaders.apps) }));
      }
      tbody.append(el("tr", { "data-id": String(a.id) }, td("#" + a.id), td(a.dataset + " (" + a.provider + ")"),
        td(fieldList(a.approvedFields || a.fields)), td(a.purpose), td(a.state, "state " + a.state),
        td(through(a.approvedEnd || a.periodEnd)), td(a.decisionReason), actions));
    }
    if (!data.myApplications.length) empty(tbody, 8);
  }
  loaders.apps = track("apps", loadApps);

  // ------------------------------------------------------------ pending approvals
  const LOWER = { clear: ["clear", "masked"], masked: ["masked"], encrypted: ["encrypted"] };
  async function loadPending() {
    const current = latest("pending");
    const data = await gql(`{ pendingApprovals { ${APP} } }`);
    if (!current()) return;
    const tbody = $("#pending tbody");
    tbody.replaceChildren();
    $("#pending-count").textContent = data.pendingApprovals.length ? String(data.pendingApprovals.length) : "";
    for (const a of data.pendingApprovals) {
      // the approval may drop fields and lower treatments: each asked field, ticked, with its choices
      const fields = el("td", { class: "fields" });
      for (const f of a.fields) {
        const sel = el("select", { name: "treatment", "aria-label": f.name + " treatment" });
        for (const t of LOWER[f.treatment] || [f.treatment]) sel.append(el("option", { value: t, text: t }));
        fields.append(el("label", { class: "field", "data-name": f.name },
          el("input", { type: "checkbox", name: "field", value: f.name, checked: "" }), el("span", { text: f.name }), sel));
      }
      const until = el("input", { type: "date", name: "periodEnd", value: through(a.periodEnd), "aria-label": "until" });
      const reason = el("input", { class: "reason", placeholder: "理由 reason" });
      const actions = el("td", { class: "actions" }, reason);
      const can = (s) => a.nextSteps.includes(s);
      if (can("approve")) actions.append(el("button", { type: "button", class: "approve", text: "批准 Approve", onclick: () => {
        const chosen = [...fields.querySelectorAll(".field")].filter((l) => $("input", l).checked)
          .map((l) => ({ name: l.dataset.name, treatment: $("select", l).value }));
        const input = { fields: chosen, reason: reason.value || null };
        if (until.value && until.value !== through(a.periodEnd)) input.periodEnd = until.value;
        act("批准 Approve #" + a.id, () => gql(`mutation($id: Int!, $input: ApproveInput) { approveApplication(id: $id, input: $input) { id state grantId } }`, { id: a.id, input }), loaders.pending);
      } }));
      if (can("reject")) actions.append(el("button", { type: "button", class: "reject", text: "驳回 Reject", onclick: () =>
        act("驳回 Reject #" + a.id, () => gql(`mutation($id: Int!, $r: String!) { rejectApplication(id: $id, reason: $r) { id } }`, { id: a.id, r: reason.value }), loaders.pending) }));
      if (can("return")) actions.append(el("button", { type: "button", class: "return", text: "退回 Return", onclick: () =>
        act("退回 Return #" + a.id, () => gql(`mutation($id: Int!, $r: String!) { returnApplication(id: $id, reason: $r) { id } }`, { id: a.id, r: reason.value }), loaders.pending) }));
      tbody.append(el("tr", { "data-id": String(a.id) }, td("#" + a.id), td(a.consumer), td(a.applicant), td(a.dataset),
        fields, td(a.purpose + " · " + a.legalBasis), el("td", {}, until), actions));
    }
    if (!data.pendingApprovals.length) empty(tbody, 8, "没有待审批的申请 Nothing waits for you");
  }
  loaders.pending = track("pending", loadPending);

  // ------------------------------------------------------------ grants
  async function loadGrants() {
    const state = $("#grant-filter").elements.state.value;
    const current = latest("grants");
    const data = await gql(`query($s: String!) { grants(state: $s) { id tier dataset consumer fields clearFields state
      expiresAt revokedAt revokedBy revokeReason applicationId } }`, { s: state });
    if (!current()) return;
    const tbody = $("#grants tbody");
    tbody.replaceChildren();
    for (const g of data.grants) {
      const actions = el("td", { class: "actions" });
      if (g.state !== "revoked" && g.state !== "expired") {
        const reason = el("input", { class: "reason", placeholder: "撤销理由 reason" });
        actions.append(reason, el("button", { type: "button", class: "revoke", text: "撤销 Revoke", onclick: () =>
          act("撤销 Revoke #" + g.id, () => gql(`mutation($id: Int!, $r: String!) { revokeGrant(id: $id, reason: $r) { id state } }`, { id: g.id, r: reason.value }), loaders.grants) }));
      }
      if (steward() && g.state !== "revoked") {
        const until = el("input", { type: "date", class: "until", "aria-label": "renew until" });
        actions.append(until, el("button", { type: "button", class: "renew", text: "续期 Renew", onclick: () =>
          act("续期 Renew #" + g.id, () => gql(`mutation($id: Int!, $u: String!) { renewGrant(id: $id, until: $u) { id } }`, { id: g.id, u: until.value }), loaders.grants) }));
      }
      const fields = g.fields.map((f) => f + (g.clearFields.includes(f) ? "" : "*")).join(" ");
      tbody.append(el("tr", { "data-id": String(g.id), "data-application": String(g.applicationId || "") },
        td("#" + g.id), td(g.dataset + " (" + g.tier + ")"), td(g.consumer), td(fields), td(g.state, "state " + g.state),
        td(g.state === "revoked" ? "撤销 " + beijing(g.revokedAt) + " · " + (g.revokeReason || "") : through(g.expiresAt)),
        td(g.applicationId ? "#" + g.applicationId : ""), actions));
    }
    if (!data.grants.length) empty(tbody, 8);
  }
  $("#grant-filter").addEventListener("submit", (ev) => { ev.preventDefault(); loaders.grants(); });
  loaders.grants = track("grants", loadGrants);

  // ------------------------------------------------------------ demands
  async function loadDemands() {
    const current = latest("demands");
    const data = await gql(`{ demands { id requester provider description fieldsWanted purpose state promisedDate reason dataset } }`);
    if (!current()) return;
    const tbody = $("#demands tbody");
    tbody.replaceChildren();
    for (const d of data.demands) {
      const actions = el("td", { class: "actions" });
      if (steward() && d.provider === me.department && d.state === "open") {
        const answer = el("select", {}, el("option", { value: "will_provide", text: "will_provide 将提供" }),
          el("option", { value: "cannot_provide", text: "cannot_provide 无法提供" }));
        const by = el("input", { type: "date", "aria-label": "promised date" });
        const reason = el("input", { class: "reason", placeholder: "理由 reason" });
        actions.append(answer, by, reason, el("button", { type: "button", class: "answer", text: "答复 Answer", onclick: () =>
          act("答复 Answer #" + d.id, () => gql(`mutation($id: Int!, $a: String!, $p: String, $r: String) { answerDemand(id: $id, answer: $a, promisedDate: $p, reason: $r) { id } }`,
            { id: d.id, a: answer.value, p: by.value || null, r: reason.value || null }), loaders.demands) }));
      }
      tbody.append(el("tr", { "data-id": String(d.id) }, td("#" + d.id), td(d.requester), td(d.provider),
        td(d.description + (d.fieldsWanted ? " [" + d.fieldsWanted + "]" : "")), td(d.purpose), td(d.state, "state " + d.state),
        td([d.promisedDate, d.reason, d.dataset].filter(Boolean).join(" · ")), actions));
    }
    if (!data.demands.length) empty(tbody, 8);
  }
  $("#demand-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = ev.target.elements;
    act("提交需求 File", () => gql(`mutation($p: String!, $d: String!, $u: String!, $w: String!) { createDemand(provider: $p, description: $d, purpose: $u, fieldsWanted: $w) { id } }`,
      { p: f.provider.value, d: f.description.value, u: f.purpose.value, w: f.fieldsWanted.value }), loaders.demands);
  });
  loaders.demands = track("demands", loadDemands);

  // ------------------------------------------------------------ quality reports
  async function loadQuality() {
    const current = latest("quality");
    const data = await gql(`{ qualityReports { id reporter provider dataset keyField recordRef field description state reason deadline timeliness } }`);
    if (!current()) return;
    const tbody = $("#quality tbody");
    tbody.replaceChildren();
    for (const q of data.qualityReports) {
      const actions = el("td", { class: "actions" });
      if (steward() && q.provider === me.department && q.state === "open") {
        const res = el("select", {}, el("option", { value: "fixed", text: "fixed 已整改" }), el("option", { value: "disputed", text: "disputed 有异议" }));
        const reason = el("input", { class: "reason", placeholder: "说明 what was done / why" });
        actions.append(res, reason, el("button", { type: "button", class: "resolve", text: "处理 Resolve", onclick: () =>
          act("处理 Resolve #" + q.id, () => gql(`mutation($id: Int!, $s: String!, $r: String!) { resolveQuality(id: $id, resolution: $s, reason: $r) { id } }`,
            { id: q.id, s: res.value, r: reason.value }), loaders.quality) }));
      }
      tbody.append(el("tr", { "data-id": String(q.id) }, td("#" + q.id), td(q.reporter), td(q.provider), td(q.dataset),
        td(q.keyField + "=" + q.recordRef + (q.field ? " · " + q.field : "")), td(q.description + (q.reason ? " · " + q.reason : "")),
        td(q.timeliness, "state " + q.timeliness), td(beijing(q.deadline)), actions));
    }
    if (!data.qualityReports.length) empty(tbody, 9);
  }
  $("#quality-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = ev.target.elements;
    act("报告 Report", () => gql(`mutation($ds: String!, $r: String!, $d: String!, $f: String) { reportQuality(dataset: $ds, record: $r, description: $d, field: $f) { id } }`,
      { ds: f.dataset.value, r: f.record.value, d: f.description.value, f: f.field.value || null }), loaders.quality);
  });
  loaders.quality = track("quality", loadQuality);

  // ------------------------------------------------------------ 目录与数据: catalogue as code, loading rows
  // A client of /admin/catalogue/* and /admin/data/* (what `shuqiao catalog apply|export` and
  // `shuqiao data load` mirror). Which department a steward may change is checked there, not here:
  // this section only shows itself to a person whose session carries catalog:write.
  const canSteward = () => Boolean(me && me.scopes.includes("catalog:write"));

  // One call to a JSON endpoint with the session and its CSRF token; a problem document becomes an
  // Error with the server's message, its `code` and its `extensions`.
  async function call(method, path, body, headers) {
    await session;
    const r = await fetch(path, {
      method, body, credentials: "same-origin", headers: Object.assign({ "X-CSRF-Token": page.csrf() }, headers || {}),
    });
    if (r.status === 401) { signIn(); throw new Error("请重新登录 Sign in again"); }
    if (r.ok) return (r.headers.get("content-type") || "").includes("json") ? r.json() : r.text();
    let problem = null;
    try { problem = (await r.json()).errors[0]; } catch (e) { throw new Error(r.status + " " + r.statusText); }
    const err = new Error(problem.message);
    err.code = (problem.extensions || {}).code;
    err.extensions = problem.extensions || {};
    throw err;
  }

  function download(name, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = el("a", { href: url, download: name, hidden: "" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  let ownDatasets = [];
  function showColumns() {
    const d = ownDatasets.find((x) => x.code === $("#load-form").elements.dataset.value);
    $("#load-columns").textContent = d
      ? "表头 Header: " + d.columns.join(",") + (d.entity_key ? " · 键 key: " + d.entity_key : "") : "";
  }
  async function loadDatasets() {
    const current = latest("datasets");
    const data = await call("GET", "/admin/data/datasets");
    if (!current()) return;
    ownDatasets = data.datasets;
    $("#steward-dept").textContent = data.department || "";
    const tbody = $("#datasets tbody");
    tbody.replaceChildren();
    for (const d of ownDatasets) {
      const sync = d.last_sync_at ? beijing(d.last_sync_at) + " · " + (d.last_sync_outcome || "") : "";
      tbody.append(el("tr", { "data-code": d.code }, td(d.code), td(d.name), td(d.published ? "是 yes" : "否 draft"),
        td(d.row_count === null ? "—" : String(d.row_count), "rows"), td(beijing(d.last_load_at), "loaded"),
        td(beijing(d.last_change_at), "changed"), td(sync, "synced")));
    }
    if (!ownDatasets.length) empty(tbody, 7, "本部门还没有数据集 No datasets yet: apply a catalogue file");
    const sel = $("#load-form").elements.dataset, was = sel.value;
    sel.replaceChildren(...ownDatasets.map((d) => el("option", { value: d.code, text: d.name + " " + d.code })));
    if (ownDatasets.some((d) => d.code === was)) sel.value = was;
    showColumns();
  }
  $("#load-form").elements.dataset.addEventListener("change", showColumns);
  loaders.steward = track("datasets", loadDatasets);

  // catalogue as code: dry run, read the diff, then apply exactly the text that was dry-run
  const cat = $("#catalogue-form");
  let checked = null; // the text the last dry run accepted; Apply sends only that
  let fileName = "catalogue.yaml";
  const YAML_BODY = { "Content-Type": "application/yaml" };
  function hideCatalogue() {
    checked = null;
    $("#catalogue-errors").hidden = true;
    $("#catalogue-plan").hidden = true;
    $("#catalogue-apply").disabled = true;
  }
  function named(name) { fileName = name; $("#catalogue-name").textContent = name; }
  cat.elements.text.addEventListener("input", hideCatalogue);
  cat.elements.file.addEventListener("change", async () => {
    const file = cat.elements.file.files[0];
    if (!file) return;
    cat.elements.text.value = await file.text();
    named(file.name);
    hideCatalogue();
  });
  const exportLive = () => call("GET", "/admin/catalogue/export");
  $("#catalogue-live").addEventListener("click", () => act("读取当前目录 Live catalogue", async () => {
    cat.elements.text.value = await exportLive();
    named("catalogue-" + (me.department || "all") + ".yaml");
    hideCatalogue();
  }, async () => {}));
  $("#catalogue-export").addEventListener("click", () => act("导出 Export", async () => {
    download("catalogue-" + (me.department || "all") + ".yaml", await exportLive(), "application/yaml");
  }, async () => {}));

  function showErrors(errors) {
    const tbody = $("#catalogue-errors tbody");
    tbody.replaceChildren(...errors.map((e) => el("tr", {}, td(e.file + ":" + e.line + ":" + e.column, "where"),
      td(e.path, "path"), td(e.message, "message"))));
    $("#catalogue-errors").hidden = false;
  }
  const SIGN = { add: "+ 新增 add", change: "~ 修改 change", retype: "! 改类型 retype", remove: "- 删除 remove" };
  const KIND = { department: "部门 department", dataset: "数据集 dataset", field: "信息项 field" };
  const shown = (v) => v === null || v === undefined ? "—" : typeof v === "string" ? v : JSON.stringify(v);
  function showPlan(plan, text) {
    const list = $("#catalogue-changes"), losses = $("#catalogue-losses");
    list.replaceChildren();
    losses.replaceChildren();
    for (const c of plan.changes) {
      const details = el("ul", {});
      for (const [name, [a, b]] of Object.entries(c.changes || {})) details.append(el("li", { text: name + ": " + shown(a) + " → " + shown(b) }));
      for (const p of c.pool || []) details.append(el("li", { class: "pool", text: "数据表 pool: " + p }));
      if (c.note) details.append(el("li", { text: "说明 note: " + c.note }));
      if (c.loses) details.append(el("li", { class: "danger", text: "将丢失 loses: " + c.loses }));
      list.append(el("li", { class: "change " + c.action, "data-target": c.target },
        el("strong", { text: (SIGN[c.action] || c.action) + " " + (KIND[c.kind] || c.kind) + " " + c.target }),
        details.childElementCount ? details : null));
      if (c.loses) losses.append(el("li", { text: (KIND[c.kind] || c.kind) + " " + c.target + ": " + c.loses }));
    }
    if (!plan.changes.length) list.append(el("li", { class: "empty", text: "无变更：当前目录与文件一致 No changes: the live catalogue matches the file" }));
    $("#catalogue-summary").textContent = plan.changes.length + " 项变更 changes" +
      (plan.destructive ? " · " + plan.destructive + " 项丢失数据 lose data" : "") + " · 部门 departments: " + plan.departments.join(", ");
    const allow = $("#catalogue-allow");
    allow.checked = false;
    $("#catalogue-destructive").hidden = !plan.destructive;
    const ready = () => { $("#catalogue-apply").disabled = !plan.changes.length || (plan.destructive > 0 && !allow.checked); };
    allow.onchange = ready;
    ready();
    checked = text;
    $("#catalogue-plan").hidden = false;
  }
  cat.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = cat.elements.text.value;
    hideCatalogue();
    try {
      say("预演 Dry run…");
      const plan = await call("POST", "/admin/catalogue/apply?dry_run=1&filename=" + encodeURIComponent(fileName), text, YAML_BODY);
      showPlan(plan, text);
      say("预演 Dry run ✓ " + plan.changes.length + " 项变更 changes; 尚未应用 not applied yet");
    } catch (err) {
      if (err.code === "INVALID_CATALOGUE") showErrors(err.extensions.errors || []);
      say("预演 Dry run — " + (err.code ? err.code + ": " : "") + err.message, true);
    }
  });
  $("#catalogue-apply").addEventListener("click", () => {
    const text = cat.elements.text.value;
    if (checked === null || text !== checked) { say("文本已改动，请重新预演 The text changed: dry-run it again", true); return; }
    const allow = $("#catalogue-allow").checked ? "&allow_destructive=1" : "";
    act("应用目录 Apply", async () => {
      const done = await call("POST", "/admin/catalogue/apply?filename=" + encodeURIComponent(fileName) + allow, text, YAML_BODY);
      hideCatalogue();
      return done.changes.length + " 项变更已应用 changes applied · 目录版本 version " + done.version;
    }, loaders.steward);
  });

  // loading rows: the file streams to the endpoint; the answer lists the rejects
  const MEDIA = {
    csv: "text/csv", jsonl: "application/x-ndjson", ndjson: "application/x-ndjson",
    xlsx: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
  };
  let rejectsCsv = null;
  const csvCell = (v) => { const s = String(v === null || v === undefined ? "" : v); return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; };
  function showLoad(fileName, r, refusal) {
    const rejects = r.rejects || [];
    $("#load-summary").textContent = (refusal
      ? "未加载任何行 Nothing was loaded: " + refusal
      : `读取 read ${r.read} · 加载 loaded ${r.loaded} · 新增 inserted ${r.inserted} · 更新 updated ${r.updated} · ` +
        `删除 deleted ${r.deleted} · 被拒 rejected ${r.rejected} · 现有 rows now ${r.row_count}`) +
      (rejects.length && !r.rejects_complete ? ` (仅列出前 ${rejects.length} 条 only the first ${rejects.length} rejects are listed)` : "");
    $("#load-summary").className = refusal ? "error" : "";
    const tbody = $("#rejects tbody");
    tbody.replaceChildren(...rejects.map((x) => el("tr", { "data-row": String(x.row) }, td(x.row, "row"), td(x.column, "column"), td(x.reason, "reason"))));
    if (!rejects.length) empty(tbody, 3, "没有被拒行 No rejected rows");
    rejectsCsv = rejects.length ? { name: fileName + ".rejects.csv",
      text: "\ufeffrow,column,reason\r\n" + rejects.map((x) => [x.row, x.column, x.reason].map(csvCell).join(",")).join("\r\n") + "\r\n" } : null;
    $("#rejects-download").hidden = !rejectsCsv;
    $("#load-result").hidden = false;
  }
  $("#rejects-download").addEventListener("click", () => { if (rejectsCsv) download(rejectsCsv.name, rejectsCsv.text, "text/csv"); });
  $("#load-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = ev.target.elements, file = f.file.files[0], ds = f.dataset.value;
    const ext = file ? file.name.split(".").pop().toLowerCase() : "";
    if (!file || !MEDIA[ext]) { say("请选择 CSV、XLSX 或 JSON Lines 文件 Choose a .csv, .xlsx or .jsonl file", true); return; }
    const query = new URLSearchParams({ mode: f.mode.value, encoding: f.encoding.value, max_rejects: f.maxRejects.value || "0" });
    $("#load-result").hidden = true;
    act("加载 Load " + ds, async () => {
      try {
        const r = await call("POST", "/admin/data/" + encodeURIComponent(ds) + "/load?" + query, file, { "Content-Type": MEDIA[ext] });
        showLoad(file.name, r, null);
        return r.loaded + " / " + r.read + " 行已加载 rows loaded";
      } catch (err) {
        if (err.code === "ROWS_REJECTED") showLoad(file.name, err.extensions, err.message);
        throw err;
      }
    }, loaders.steward);
  });

  // first view: the tab in the address, else My applications; stewards see their pending count
  const first = location.hash.slice(1);
  session.then((who) => {
    if (!who) return;
    $("#steward-tab").hidden = !canSteward();
    show(loaders[first] && (first !== "steward" || canSteward()) ? first : "apps");
    if (steward() && first !== "pending") loaders.pending();
  });
})();
