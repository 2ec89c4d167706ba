// 查询工作台 The query workbench (docs/portal.md §Query workbench): GraphiQL on /open/graphql or
// /share/graphql. Configuration comes from <body data-config> (the CSP allows no inline script);
// GraphiQL, React and Monaco from /graphiql/vendor/graphiql.js (globalThis.ShuqiaoGraphiQL).
//
// Share tier: the page signs the person in by itself — OAuth 2 authorization code with PKCE (S256)
// as the public client of the config — and keeps the access token in this tab's sessionStorage
// only. The code and state leave the address bar before anything else happens; the token is never
// put in a URL, a cookie or the headers editor (the fetcher adds it to each request).
(() => {
  'use strict';

  const cfg = JSON.parse(document.body.dataset.config);
  const G = globalThis.ShuqiaoGraphiQL;
  const { React } = G;
  const h = React.createElement;
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = 'shuqiao.graphiql.share.token';
  const LOGIN_KEY = 'shuqiao.graphiql.share.login';
  let apiKey = ''; // open tier: typed into the page, kept in memory only

  function say(message) {
    $('status').textContent = message || '';
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'text') node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  // GraphiQL keeps tabs in a Storage; one namespace per tier, the share tier's in this tab only
  // (queries there may carry identifiers in filters). Responses and headers are never stored.
  function namespaced(store, prefix) {
    const own = () => {
      const keys = [];
      for (let i = 0; i < store.length; i += 1) {
        const k = store.key(i);
        if (k && k.startsWith(prefix)) keys.push(k.slice(prefix.length));
      }
      return keys;
    };
    return {
      getItem: (k) => store.getItem(prefix + k),
      setItem: (k, v) => store.setItem(prefix + k, v),
      removeItem: (k) => store.removeItem(prefix + k),
      key: (i) => own()[i] ?? null,
      clear: () => own().forEach((k) => store.removeItem(prefix + k)),
      get length() {
        return own().length;
      },
    };
  }

  // ------------------------------------------------------------------ PKCE
  function b64url(bytes) {
    let s = '';
    for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function randomString(n) {
    const bytes = new Uint8Array(n);
    crypto.getRandomValues(bytes);
    return b64url(bytes);
  }

  // SHA-256 (FIPS 180-4) for pages served over plain http on an intranet name, where browsers
  // withhold crypto.subtle; crypto.subtle is used wherever it exists.
  function sha256Fallback(data) {
    const K = new Uint32Array([
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
      0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
      0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
      0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
      0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
      0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
      0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]);
    const H = new Uint32Array([
      0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ]);
    const length = data.length;
    const padded = new Uint8Array(((length + 9 + 63) >> 6) << 6);
    padded.set(data);
    padded[length] = 0x80;
    const view = new DataView(padded.buffer);
    view.setUint32(padded.length - 4, (length * 8) >>> 0);
    view.setUint32(padded.length - 8, Math.floor(length / 0x20000000));
    const W = new Uint32Array(64);
    const rotr = (x, n) => (x >>> n) | (x << (32 - n));
    for (let off = 0; off < padded.length; off += 64) {
      for (let i = 0; i < 16; i += 1) W[i] = view.getUint32(off + i * 4);
      for (let i = 16; i < 64; i += 1) {
        const s0 = rotr(W[i - 15], 7) ^ rotr(W[i - 15], 18) ^ (W[i - 15] >>> 3);
        const s1 = rotr(W[i - 2], 17) ^ rotr(W[i - 2], 19) ^ (W[i - 2] >>> 10);
        W[i] = (W[i - 16] + s0 + W[i - 7] + s1) >>> 0;
      }
      let [a, b, c, d, e, f, g, k] = H;
      for (let i = 0; i < 64; i += 1) {
        const t1 = (k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + W[i]) >>> 0;
        const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
        k = g;
        g = f;
        f = e;
        e = (d + t1) >>> 0;
        d = c;
        c = b;
        b = a;
        a = (t1 + t2) >>> 0;
      }
      [a, b, c, d, e, f, g, k].forEach((v, i) => {
        H[i] = (H[i] + v) >>> 0;
      });
    }
    const out = new Uint8Array(32);
    const outView = new DataView(out.buffer);
    H.forEach((v, i) => outView.setUint32(i * 4, v));
    return out;
  }

  async function sha256(text) {
    const data = new TextEncoder().encode(text);
    if (globalThis.crypto && crypto.subtle) return new Uint8Array(await crypto.subtle.digest('SHA-256', data));
    return sha256Fallback(data);
  }

  // ------------------------------------------------------------------ share-tier sign-in
  function currentToken() {
    let saved = null;
    try {
      saved = JSON.parse(sessionStorage.getItem(TOKEN_KEY) || 'null');
    } catch (_) {
      saved = null;
    }
    if (!saved || !saved.token) return null;
    if (saved.expiresAt && Date.now() > saved.expiresAt - 5000) {
      sessionStorage.removeItem(TOKEN_KEY);
      return null;
    }
    return saved;
  }

  async function startSignIn() {
    const o = cfg.oauth;
    const home = new URL(o.redirectUri);
    if (home.origin !== location.origin) {
      // the sign-in returns to the issuer's address, whose sessionStorage is another one
      location.assign(home.href + location.search);
      return;
    }
    const verifier = randomString(48);
    const state = randomString(24);
    const challenge = b64url(await sha256(verifier));
    // where to come back to: the query and variables of the address, not the code
    sessionStorage.setItem(LOGIN_KEY, JSON.stringify({ verifier, state, search: location.search }));
    const query = new URLSearchParams({
      response_type: 'code',
      client_id: o.clientId,
      redirect_uri: o.redirectUri,
      scope: o.scope,
      state,
      code_challenge: challenge,
      code_challenge_method: 'S256',
    });
    location.assign(`${o.authorize}?${query}`);
  }

  async function finishSignIn(params) {
    const o = cfg.oauth;
    let saved = null;
    try {
      saved = JSON.parse(sessionStorage.getItem(LOGIN_KEY) || 'null');
    } catch (_) {
      saved = null;
    }
    sessionStorage.removeItem(LOGIN_KEY);
    // the code and state leave the address bar (and so the history) before anything else
    history.replaceState(null, '', location.pathname + ((saved && saved.search) || ''));
    if (!saved || params.get('state') !== saved.state) {
      throw new Error('登录已过期，或不是在本标签页中发起的，请重新登录。The sign-in expired or was not started in this tab.');
    }
    if (params.get('error') || !params.get('code')) {
      throw new Error('未获授权：登录被拒绝或已取消。Sign-in was refused or cancelled.');
    }
    const r = await fetch(o.token, {
      method: 'POST',
      credentials: 'omit',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code: params.get('code'),
        redirect_uri: o.redirectUri,
        client_id: o.clientId,
        code_verifier: saved.verifier,
      }),
    });
    const body = await r.json().catch(() => ({}));
    if (!r.ok || !body.access_token) {
      throw new Error(`登录失败 Sign-in failed: ${body.error_description || body.error || r.status}`);
    }
    const expiresAt = body.expires_in ? Date.now() + body.expires_in * 1000 : 0;
    sessionStorage.setItem(TOKEN_KEY, JSON.stringify({ token: body.access_token, expiresAt }));
  }

  async function signOut() {
    const saved = currentToken();
    sessionStorage.removeItem(TOKEN_KEY);
    if (saved) {
      await fetch(cfg.oauth.revoke, {
        method: 'POST',
        credentials: 'omit',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          token: saved.token,
          token_type_hint: 'access_token',
          client_id: cfg.oauth.clientId,
        }),
      }).catch(() => undefined);
    }
    location.assign(location.pathname);
  }

  // ------------------------------------------------------------------ requests
  function authHeaders() {
    if (cfg.tier === 'share') {
      const saved = currentToken();
      return saved ? { Authorization: `Bearer ${saved.token}` } : null;
    }
    return apiKey ? { [cfg.apiKeyHeader]: apiKey } : {};
  }

  function explain(status, headers) {
    if (status === 429) {
      const wait = headers.get('Retry-After');
      say(`访问过于频繁：请在 ${wait || '稍后'} 秒后重试。Rate limited${wait ? `; retry after ${wait} s` : ''}.`);
    } else if (status === 401 && cfg.tier === 'share') {
      sessionStorage.removeItem(TOKEN_KEY);
      say('登录已失效，请重新登录。The sign-in ended; sign in again.');
      renderIdentity();
    } else if (status === 401) {
      say('API Key 无效。The API key is not valid.');
    }
  }

  async function fetcher(graphQLParams, opts) {
    const auth = authHeaders();
    if (auth === null) {
      return { errors: [{ message: '请先登录。Sign in first.', extensions: { code: 'UNAUTHENTICATED' } }] };
    }
    const headers = {
      'Content-Type': 'application/json',
      Accept: 'application/graphql-response+json, application/json',
      ...((opts && opts.headers) || {}),
      ...auth,
    };
    const r = await fetch(cfg.endpoint, {
      method: 'POST',
      credentials: 'omit',
      headers,
      body: JSON.stringify(graphQLParams),
    });
    explain(r.status, r.headers);
    const text = await r.text();
    try {
      return JSON.parse(text);
    } catch (_) {
      return { errors: [{ message: `HTTP ${r.status}`, extensions: { code: 'INTERNAL_SERVER_ERROR' } }] };
    }
  }

  async function getJSON(url, headers) {
    const r = await fetch(url, { credentials: 'omit', headers: headers || {} });
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    return r.json();
  }

  // ------------------------------------------------------------------ the header bar
  function renderIdentity() {
    const box = $('identity');
    box.replaceChildren();
    if (cfg.tier === 'open') {
      const input = el('input', {
        id: 'api-key',
        type: 'password',
        autocomplete: 'off',
        spellcheck: 'false',
        placeholder: 'sk_…',
        'aria-describedby': 'api-key-help',
      });
      input.value = apiKey;
      input.addEventListener('input', () => {
        apiKey = input.value.trim();
      });
      const form = el(
        'form',
        { class: 'wb-key', autocomplete: 'off' },
        el('label', { for: 'api-key', text: 'API Key（可选） ' }),
        input,
        el('span', {
          id: 'api-key-help',
          class: 'wb-help',
          text: `以 ${cfg.apiKeyHeader} 请求头发送，仅保存在本页内存中；有条件开放数据需获批企业的 Key。`,
        }),
      );
      form.addEventListener('submit', (event) => event.preventDefault());
      box.append(form);
      return;
    }
    const saved = currentToken();
    if (saved) {
      const out = el('button', { type: 'button', id: 'sign-out', text: '退出登录 Sign out' });
      out.addEventListener('click', () => {
        signOut();
      });
      box.append(el('span', { id: 'who', text: `已登录${dept ? `：${dept}` : ''} Signed in ` }), out);
    } else {
      const inBtn = el('button', { type: 'button', id: 'sign-in', text: '登录 Sign in' });
      inBtn.addEventListener('click', () => {
        startSignIn().catch((err) => say(String(err.message || err)));
      });
      box.append(inBtn);
    }
  }

  // ------------------------------------------------------------------ the side panels
  let examples = [];
  let errorCodes = [];
  let dept = null;

  function ExamplesPanel() {
    const queryEditor = G.useGraphiQL((s) => s.queryEditor);
    const variableEditor = G.useGraphiQL((s) => s.variableEditor);
    const { addTab } = G.useGraphiQLActions();
    const open = (example) => {
      addTab();
      if (queryEditor) queryEditor.setValue(example.query);
      if (variableEditor) variableEditor.setValue('');
    };
    return h(
      'section',
      { className: 'wb-panel', 'aria-labelledby': 'wb-examples-title' },
      h('h2', { id: 'wb-examples-title', className: 'graphiql-doc-explorer-title' }, '示例查询 Examples'),
      h('p', { className: 'wb-help' }, '每个数据集一个示例，按您当前可见的 schema 生成；点击在新标签页中打开。'),
      examples.length === 0
        ? h('p', null, '没有可查询的数据集。No datasets in this schema.')
        : h(
            'ul',
            { className: 'wb-examples' },
            examples.map((ex) =>
              h(
                'li',
                { key: ex.rootField },
                h(
                  'button',
                  { type: 'button', 'data-example': ex.rootField, onClick: () => open(ex) },
                  h('span', { className: 'wb-example-name' }, ex.name),
                  h('span', { className: 'wb-example-meta' }, `${ex.rootField} · ${ex.note}`),
                ),
              ),
            ),
          ),
    );
  }

  function ErrorsPanel() {
    return h(
      'section',
      { className: 'wb-panel', 'aria-labelledby': 'wb-errors-title' },
      h('h2', { id: 'wb-errors-title', className: 'graphiql-doc-explorer-title' }, '错误代码 Error codes'),
      h(
        'p',
        { className: 'wb-help' },
        '错误在 errors[].extensions.code 中。',
        h('a', { href: '/graphiql/errors', target: '_blank', rel: 'noopener' }, '完整说明'),
      ),
      h(
        'dl',
        { className: 'wb-errors' },
        errorCodes
          .filter((c) => c.tiers.includes(cfg.tier))
          .flatMap((c) => [
            h('dt', { key: `${c.code}-t` }, h('code', null, c.code), ` ${c.status}`),
            h('dd', { key: `${c.code}-d` }, c.zh),
          ]),
      ),
    );
  }

  const glyph = (text) => () => h('span', { className: 'wb-glyph', 'aria-hidden': 'true' }, text);
  const EXAMPLES = { title: '示例查询 Examples', icon: glyph('例'), content: ExamplesPanel };
  const ERRORS = { title: '错误代码 Error codes', icon: glyph('错'), content: ErrorsPanel };

  // ------------------------------------------------------------------ start
  function showSignIn(message) {
    const main = $('graphiql');
    const button = el('button', { type: 'button', id: 'sign-in-main', text: '登录 Sign in' });
    button.addEventListener('click', () => {
      startSignIn().catch((err) => say(String(err.message || err)));
    });
    main.replaceChildren(
      el(
        'section',
        { class: 'wb-signin' },
        el('h2', { text: '共享接口需要登录 The share tier needs you to sign in' }),
        el('p', {
          text: '以您本人的账号登录后，本页使用您的令牌查询 /share/graphql：您看到的 schema、数据和限制都与您所在部门一致。令牌只保存在本标签页中。',
        }),
        button,
        message ? el('p', { class: 'wb-error', role: 'alert', text: message }) : '',
      ),
    );
  }

  async function start() {
    let params = new URLSearchParams(location.search);
    if (cfg.tier === 'share') {
      if (params.has('code') || params.has('error')) {
        try {
          await finishSignIn(params);
        } catch (err) {
          renderIdentity();
          showSignIn(String(err.message || err));
          return;
        }
        params = new URLSearchParams(location.search); // the query= and variables= from before
      }
      if (!currentToken()) {
        renderIdentity();
        showSignIn('');
        return;
      }
    }
    const auth = authHeaders() || {};
    const [ex, errs] = await Promise.all([
      getJSON(cfg.examples, cfg.tier === 'share' ? auth : {}).catch((err) => {
        say(`示例加载失败 Examples failed to load: ${err.message}`);
        return { examples: [] };
      }),
      getJSON(cfg.errors).catch(() => ({ codes: [] })),
    ]);
    examples = ex.examples || [];
    dept = ex.department || null;
    errorCodes = errs.codes || [];
    renderIdentity();

    const store = cfg.tier === 'share' ? sessionStorage : localStorage;
    const props = {
      fetcher,
      plugins: [EXAMPLES, ERRORS, G.HISTORY_PLUGIN],
      visiblePlugin: EXAMPLES,
      storage: namespaced(store, `shuqiao.graphiql.${cfg.tier}.`),
      shouldPersistHeaders: false,
      defaultEditorToolsVisibility: params.has('variables') ? 'variables' : false,
      defaultQuery: examples.length ? examples[0].query : '# 在左侧“示例查询”中选择一个数据集\n{ __typename }\n',
    };
    if (params.has('query')) props.initialQuery = params.get('query');
    if (params.has('variables')) props.initialVariables = params.get('variables');
    const main = $('graphiql');
    main.replaceChildren();
    G.createRoot(main).render(h(G.GraphiQL, props));
  }

  start().catch((err) => say(`工作台启动失败 The workbench failed to start: ${err.message || err}`));
})();
