// The workbench's third-party code, bundled by build.mjs into gateway/static/graphiql/graphiql.js.
// Nothing of ours lives here: the page's own script (gateway/static/workbench/workbench.js) uses
// what this exposes on `globalThis.ShuqiaoGraphiQL`.
import React from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL, HISTORY_PLUGIN } from 'graphiql';
import { useGraphiQL, useGraphiQLActions } from '@graphiql/react';
import 'graphiql/style.css';

// Monaco's workers are files next to this bundle (same origin: CSP `worker-src 'self'`).
const here = document.currentScript ? document.currentScript.src : location.href;
const WORKERS = { json: 'json.worker.js', graphql: 'graphql.worker.js' };
globalThis.MonacoEnvironment = {
  getWorker(_workerId, label) {
    return new Worker(new URL(WORKERS[label] || 'editor.worker.js', here));
  },
};

globalThis.ShuqiaoGraphiQL = Object.freeze({
  React,
  createRoot,
  GraphiQL,
  HISTORY_PLUGIN,
  useGraphiQL,
  useGraphiQLActions,
});
