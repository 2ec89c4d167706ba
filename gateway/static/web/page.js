// What every signed-in shell page over POST /admin/graphql shares (the console, the enterprise
// pages): the session (signing in when there is none, then back to `next`), one GraphQL call
// carrying the session's CSRF token, the status line and a few DOM helpers. No framework, no CDN.
"use strict";
window.ShuqiaoPage = (function () {
  const $ = (sel, root) => (root || document).querySelector(sel);

  function el(tag, attrs, ...kids) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") n.className = v; else if (k === "text") n.textContent = v;
      else if (k.startsWith("on")) n.addEventListener(k.slice(2), v); else n.setAttribute(k, v);
    }
    for (const k of kids) if (k !== null && k !== undefined) n.append(k);
    return n;
  }
  const td = (text, cls) => el("td", { text: text === null || text === undefined ? "" : String(text), class: cls || "" });
  function empty(tbody, cols, text) {
    tbody.append(el("tr", {}, el("td", { colspan: String(cols), class: "empty", text: text || "无 None" })));
  }
  const day = (iso) => iso ? new Date(iso).toLocaleDateString("sv-SE", { timeZone: "Asia/Shanghai" }) : "";
  // A period end is the instant after its last day (a date means "through that day", China
  // Standard Time): show the last day it includes.
  const through = (iso) => iso ? day(new Date(new Date(iso).getTime() - 1).toISOString()) : "";

  // `next`: where to come back after signing in; `show(me)`: fill in who is signed in.
  function start(next, show) {
    const status = $("#status");
    let csrf = "";
    const signIn = () => { location.assign("/web/login?next=" + encodeURIComponent(next)); };
    const session = fetch("/web/session", { credentials: "same-origin" }).then(async (r) => {
      if (r.status === 401) { signIn(); return null; }
      const me = await r.json();
      csrf = me.csrf;
      $("#signout").elements.csrf.value = me.csrf;
      show(me);
      return me;
    });
    function say(text, isError) { status.textContent = text; status.className = isError ? "error" : ""; }

    // One GraphQL call; a refusal (errors[]) becomes an Error whose message is the server's and
    // whose `code` is extensions.code (FORBIDDEN, CONFLICT, BAD_USER_INPUT, ...).
    async function gql(query, variables) {
      await session;
      const r = await fetch("/admin/graphql", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ query, variables: variables || {} }),
      });
      if (r.status === 401) { signIn(); throw new Error("请重新登录 Sign in again"); }
      let body = null;
      try { body = await r.json(); } catch (e) { throw new Error(r.status + " " + r.statusText); }
      if (body.errors && body.errors.length) {
        const e = body.errors[0], err = new Error(e.message);
        err.code = (e.extensions || {}).code;
        throw err;
      }
      if (!body.data) { const err = new Error(String(r.status)); err.code = body.code; throw err; }
      return body.data;
    }
    // run an action, say what happened, reload the view; refusals shown with their code
    async function act(label, fn, reload) {
      try {
        say(label + "…");
        const done = await fn();
        say(label + " ✓" + (typeof done === "string" ? " " + done : ""));
        await reload();
      } catch (err) {
        say(label + " — " + (err.code ? err.code + ": " : "") + err.message, true);
      }
    }

    // A view's table is aria-busy while any load of it is under way (tests and screen readers wait on it).
    const busy = {};
    function track(view, fn) {
      return () => {
        const table = $("#" + view);
        busy[view] = (busy[view] || 0) + 1;
        table.setAttribute("aria-busy", "true");
        return fn().catch((err) => say((err.code ? err.code + ": " : "") + err.message, true)).finally(() => {
          if (--busy[view] === 0) table.setAttribute("aria-busy", "false");
        });
      };
    }
    return { session, signIn, say, gql, act, track, csrf: () => csrf };
  }

  return { $, el, td, empty, day, through, start };
})();
