// The portal pages work without this script (gateway/templates/portal: server-rendered, GET forms, links).
// It only adds: copy buttons beside the GraphQL and curl, auto-submit for the sort and chart selects,
// the filter's conditions narrowed to what the chosen field offers, and the usage figures of a dataset
// from /stats/datasets/{code}.json (nothing is shown when that answers 404 or fails).
// No framework, no CDN; everything from the network is written with textContent, never as HTML.
"use strict";
(function () {
  function text(el, value) { el.textContent = value === null || value === undefined ? "" : String(value); }

  // ---- copy buttons
  for (const pre of document.querySelectorAll("pre[data-copy]")) {
    const heading = document.getElementById(pre.getAttribute("aria-labelledby") || "");
    if (!heading || !navigator.clipboard) continue;
    const b = document.createElement("button");
    b.type = "button";
    b.className = "copy";
    b.dataset.target = pre.id;
    text(b, pre.dataset.copy);
    b.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(pre.textContent);
        text(b, pre.dataset.copied);
        setTimeout(() => text(b, pre.dataset.copy), 1500);
      } catch (err) { /* the text stays selectable */ }
    });
    heading.appendChild(b);
  }

  // ---- selects that submit their form when changed
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => { if (select.form) select.form.requestSubmit(); });
  }

  // ---- the filter's conditions: only those the chosen field offers
  const field = document.getElementById("filter-field");
  const op = document.getElementById("filter-op");
  if (field && op) {
    const narrow = () => {
      const chosen = field.options[field.selectedIndex];
      const offered = chosen && chosen.dataset.operators ? chosen.dataset.operators.split(" ") : null;
      for (const o of op.options) o.disabled = offered !== null && !offered.includes(o.value);
      if (op.options[op.selectedIndex] && op.options[op.selectedIndex].disabled) {
        const first = Array.from(op.options).find((o) => !o.disabled);
        if (first) op.value = first.value;
      }
    };
    field.addEventListener("change", narrow);
    narrow();
  }

  // ---- usage per day (issue 17 item 7's /stats/datasets/{code}.json), when the gateway has it
  const usage = document.getElementById("usage");
  if (usage && usage.dataset.stats) {
    fetch(usage.dataset.stats, { headers: { Accept: "application/json" } })
      .then((r) => {
        if (r.ok) return r.json();
        // no figures for this dataset (404) or none now: keep only the link to all statistics
        const link = document.getElementById("usage-json");
        if (link && link.nextSibling) link.nextSibling.remove();
        if (link) link.remove();
        return null;
      })
      .then((doc) => {
        if (!doc || !Array.isArray(doc.days) || !doc.days.length) return;
        const days = doc.days.slice(-14);
        const wrap = document.createElement("div");
        wrap.className = "table-wrap";
        wrap.tabIndex = 0;
        wrap.setAttribute("role", "region");
        wrap.setAttribute("aria-labelledby", "usage-heading");
        const table = document.createElement("table");
        table.id = "usage-table";
        const head = table.createTHead().insertRow();
        for (const key of ["labelDate", "labelCalls", "labelDownloads"]) {
          const th = document.createElement("th");
          th.scope = "col";
          text(th, usage.dataset[key]);
          head.appendChild(th);
        }
        const body = table.createTBody();
        for (const d of days) {
          const row = body.insertRow();
          for (const v of [d.date, d.calls, d.downloads]) text(row.insertCell(), v);
        }
        wrap.appendChild(table);
        document.getElementById("usage-figures").replaceChildren(wrap);
      })
      .catch(() => { /* the links above still lead to the figures */ });
  }
})();
