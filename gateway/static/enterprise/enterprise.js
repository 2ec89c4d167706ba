// The enterprise pages (/enterprise, /enterprise/apply?dataset=…): a thin client of POST /admin/graphql
// (the machine twin), like the console. No framework, no CDN, no inline script. Signed in through
// /web/login (a session cookie, HttpOnly); every call carries the session's CSRF token. Which keys,
// grants and applications are shown and what may be done with them is decided by the server.
"use strict";
(function () {
  const { $, el, td, empty, day, through } = window.ShuqiaoPage;
  const here = location.pathname + location.search;
  const { session, say, gql, act, track } = window.ShuqiaoPage.start(here, (me) => {
    $("#who-name").textContent = me.display_name || me.user;
  });
  const camel = (code) => code.replace(/_([a-z0-9])/g, (m, c) => c.toUpperCase());

  // ------------------------------------------------------------ tabs
  const loaders = {};
  function show(name) {
    for (const b of document.querySelectorAll("#tabs button")) b.setAttribute("aria-selected", String(b.dataset.tab === name));
    for (const s of document.querySelectorAll("section.tab")) s.hidden = s.id !== "tab-" + name;
    if (location.pathname === "/enterprise") history.replaceState(null, "", "#" + name);
    loaders[name]();
  }
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => show(b.dataset.tab));

  // ------------------------------------------------------------ API keys
  function showSecret(key) {
    $("#new-key-value").textContent = key;
    $("#new-key").hidden = false;
    $("#new-key-value").focus();
  }
  $("#new-key-done").addEventListener("click", () => { $("#new-key-value").textContent = ""; $("#new-key").hidden = true; });

  const KEY = "prefix name datasets ratePerMinute dailyQuota expiresAt revokedAt replacedBy state";
  async function loadKeys() {
    const data = await gql(`{ apiKeys { ${KEY} } grants(state: "active") { dataset } }`);
    const box = $("#key-datasets");
    const granted = [...new Set(data.grants.map((g) => g.dataset))].sort();
    box.replaceChildren(el("legend", { text: "仅限数据集 Only for (可选 optional; 不选 = 所有已授权 none = every granted)" }));
    for (const d of granted) box.append(el("label", { class: "field inline" }, el("input", { type: "checkbox", name: "dataset", value: d }), el("span", { text: d })));
    const tbody = $("#keys tbody");
    tbody.replaceChildren();
    for (const k of data.apiKeys) {
      const actions = el("td", { class: "actions" });
      if (k.state === "active") {
        const overlap = el("input", { type: "number", min: "0", max: "168", value: "24", class: "overlap", "aria-label": "旧密钥保留小时 overlap hours" });
        actions.append(overlap, el("button", { type: "button", class: "rotate", text: "轮换 Rotate", onclick: () =>
          act("轮换 Rotate " + k.prefix, async () => {
            const d = await gql(`mutation($p: String!, $h: Float!) { rotateApiKey(prefix: $p, overlapHours: $h) { apiKey key { prefix } } }`,
              { p: k.prefix, h: Number(overlap.value || 0) });
            showSecret(d.rotateApiKey.apiKey);
            return d.rotateApiKey.key.prefix;
          }, loaders.keys) }));
      }
      if (!k.revokedAt) {
        const revoke = el("button", { type: "button", class: "revoke", text: "撤销 Revoke" });
        revoke.addEventListener("click", () => {
          if (revoke.dataset.armed !== "1") { revoke.dataset.armed = "1"; revoke.textContent = "确认撤销 Confirm revoke"; return; }
          act("撤销 Revoke " + k.prefix, () => gql(`mutation($p: String!) { revokeApiKey(prefix: $p) { state } }`, { p: k.prefix }), loaders.keys);
        });
        actions.append(revoke);
      }
      const limits = (k.ratePerMinute || "默认 default") + "/分钟 min · " + (k.dailyQuota || "默认 default") + "/日 day";
      tbody.append(el("tr", { "data-prefix": k.prefix }, td(k.prefix), td(k.name), td(k.datasets.join(" ") || "全部已授权 all granted"),
        td(limits), td(k.state, "state " + k.state), td(k.expiresAt ? day(k.expiresAt) : "不限 never"), actions));
    }
    if (!data.apiKeys.length) empty(tbody, 7, "还没有密钥 No keys yet");
  }
  loaders.keys = track("keys", loadKeys);
  $("#key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = ev.target.elements;
    const datasets = [...document.querySelectorAll("#key-datasets input:checked")].map((i) => i.value);
    const days = f.expiresDays.value ? Number(f.expiresDays.value) : null;
    act("创建密钥 Create key", async () => {
      const d = await gql(`mutation($n: String!, $e: Int, $ds: [String!]) { createApiKey(name: $n, expiresDays: $e, datasets: $ds) { apiKey key { prefix } } }`,
        { n: f.name.value, e: days, ds: datasets });
      showSecret(d.createApiKey.apiKey);
      return d.createApiKey.key.prefix;
    }, loaders.keys);
  });

  // ------------------------------------------------------------ grants
  async function loadGrants() {
    const data = await gql(`{ grants(state: "all") { id dataset fields purpose state expiresAt revokedAt revokeReason applicationId } }`);
    const tbody = $("#grants tbody");
    tbody.replaceChildren();
    for (const g of data.grants) {
      tbody.append(el("tr", { "data-id": String(g.id), "data-dataset": g.dataset }, td("#" + g.id), td(g.dataset),
        td(g.fields.join(" ") || "全部开放信息项 the whole open view"), td(g.purpose), td(g.state, "state " + g.state),
        td(g.state === "revoked" ? "撤销 revoked " + day(g.revokedAt) + " · " + (g.revokeReason || "") : (g.expiresAt ? through(g.expiresAt) : "不限 no end")),
        td(g.applicationId ? "#" + g.applicationId : "")));
    }
    if (!data.grants.length) empty(tbody, 7, "还没有授权：在“申请”中申请 No grants yet: apply under Applications");
  }
  loaders.grants = track("grants", loadGrants);

  // ------------------------------------------------------------ quota and usage
  async function loadUsage() {
    const data = await gql(`{ usage(days: 14) { from to keys total } }`);
    const u = data.usage;
    $("#usage-range").textContent = u.from + " – " + u.to;
    const quota = $("#quota tbody");
    quota.replaceChildren();
    for (const k of u.keys) {
      quota.append(el("tr", { "data-prefix": k.prefix }, td(k.prefix), td(k.name), td(k.ratePerMinute, "num"), td(k.dailyQuota, "num"),
        td(k.callsToday, "num calls-today"), td(k.remainingToday, "num")));
    }
    if (!u.keys.length) empty(quota, 6, "没有有效密钥 No active keys");
    const head = $("#usage thead tr"), body = $("#usage tbody");
    head.replaceChildren(el("th", { text: "日期 date" }), ...u.keys.map((k) => el("th", { class: "num", text: k.prefix })), el("th", { class: "num", text: "合计 total" }));
    body.replaceChildren();
    u.total.slice().reverse().forEach((t, back) => {
      const i = u.total.length - 1 - back;
      body.append(el("tr", { "data-date": t.date }, td(t.date), ...u.keys.map((k) => {
        const d = k.days[i];
        return td(d.calls + (d.refused ? " (" + d.refused + " 拒 refused)" : ""), "num");
      }), td(t.calls, "num")));
    });
  }
  loaders.usage = track("usage", loadUsage);

  // ------------------------------------------------------------ applications
  const APP = `id tier dataset provider fields { name treatment } purpose legalBasis periodEnd state decisionReason
    approvedFields { name treatment } approvedEnd grantId nextSteps`;
  let applicable = null;
  const wanted = new URLSearchParams(location.search).get("dataset");

  function renderFields() {
    const form = $("#apply-form"), box = $("#apply-fields");
    box.replaceChildren();
    const ds = (applicable || []).find((d) => d.code === form.elements.dataset.value);
    if (!ds) return;
    for (const f of ds.fields) {
      box.append(el("label", { class: "field", "data-name": f.name },
        el("input", { type: "checkbox", name: "field", value: f.name, checked: "" }),
        el("span", { text: f.title + " " + f.graphqlName + (f.treatments[0] === "masked" ? " (脱敏 masked)" : "") })));
    }
  }

  async function loadApplicable() {
    if (applicable) return;
    const data = await gql(`{ applicableDatasets(tier: "open") { code name provider resourceCode fields { name graphqlName title treatments } } }`);
    applicable = data.applicableDatasets;
    const sel = $("#apply-form").elements.dataset;
    sel.replaceChildren();
    for (const d of applicable) sel.append(el("option", { value: d.code, text: d.name + " " + d.code + " (" + d.provider + ")" }));
    if (wanted) {
      // the dataset page links here by dataset code; a resource code or GraphQL name is accepted too
      const hit = applicable.find((d) => d.code === wanted || d.resourceCode === wanted || camel(d.code) === wanted);
      if (hit) sel.value = hit.code;
      else say("数据集 " + wanted + " 无需申请或不可申请（无条件开放、不予开放或不存在）。" +
        "Dataset " + wanted + " needs no application here, or cannot be applied for.", true);
    }
    if (!applicable.length) say("目前没有可申请的有条件开放数据集 No conditionally open dataset to apply for", true);
    renderFields();
  }
  $("#apply-form").elements.dataset.addEventListener("change", renderFields);
  $("#apply-form").elements.periodEnd.value = new Date(Date.now() + 365 * 864e5).toISOString().slice(0, 10);

  $("#apply-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = ev.target.elements;
    const fields = [...document.querySelectorAll("#apply-fields .field")]
      .filter((l) => $("input", l).checked).map((l) => ({ name: l.dataset.name }));
    if (!fields.length) { say("请选择信息项 Choose at least one field", true); return; }
    const input = {
      tier: "open", dataset: f.dataset.value, fields, purpose: f.purpose.value, legalBasis: f.legalBasis.value,
      periodEnd: f.periodEnd.value, periodStart: f.periodStart.value || null, submit: true,
    };
    act("提交申请 Apply", async () => {
      const d = await gql(`mutation($input: CreateApplicationInput!) { createApplication(input: $input) { id state } }`, { input });
      return "申请 #" + d.createApplication.id + " " + d.createApplication.state;
    }, loaders.apps);
  });

  async function showHistory(id) {
    const d = await gql(`query($id: Int!) { application(id: $id) { history { at actor organisation step fromState toState reason } } }`, { id });
    const box = $("#history");
    $("#history-id").textContent = "#" + id;
    $("ol", box).replaceChildren(...d.application.history.map((h) =>
      el("li", { text: day(h.at) + " " + h.actor + (h.organisation ? " (" + h.organisation + ")" : "") + " " +
        h.step + ": " + (h.fromState || "—") + " → " + h.toState + (h.reason ? " · " + h.reason : "") })));
    box.hidden = false;
  }

  const STEP_LABEL = { submit: "提交 Submit", resubmit: "重新提交 Resubmit", withdraw: "撤回 Withdraw" };
  async function loadApps() {
    loadApplicable().catch((err) => say(err.message, true));
    const data = await gql(`{ myApplications { ${APP} } }`);
    const tbody = $("#apps tbody");
    tbody.replaceChildren();
    for (const a of data.myApplications) {
      const actions = el("td", { class: "actions" });
      actions.append(el("button", { type: "button", class: "link history", text: "历程 History", onclick: () => showHistory(a.id).catch((err) => say(err.message, true)) }));
      const note = el("input", { class: "reason", placeholder: "说明 note", "aria-label": "说明 note" });
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
      const fields = (a.approvedFields || a.fields).map((x) => x.name).join(" ");
      tbody.append(el("tr", { "data-id": String(a.id) }, td("#" + a.id), td(a.dataset + " (" + a.provider + ")"),
        td(fields), td(a.purpose), td(a.state, "state " + a.state), td(through(a.approvedEnd || a.periodEnd)),
        td(a.decisionReason), actions));
    }
    if (!data.myApplications.length) empty(tbody, 8, "还没有申请 No applications yet");
  }
  loaders.apps = track("apps", loadApps);

  // first view: /enterprise/apply opens the application form; else the tab in the address, or the keys
  session.then(async (who) => {
    if (!who) return;
    try {
      const d = await gql("{ myEnterprise { code name } }");
      $("#who-enterprise").textContent = d.myEnterprise.name + " · " + d.myEnterprise.code;
    } catch (err) {
      say((err.code ? err.code + ": " : "") + err.message, true);
      return;
    }
    const first = location.pathname === "/enterprise/apply" ? "apps" : location.hash.slice(1);
    show(loaders[first] ? first : "keys");
  });
})();
