// The job page: GET /jobs/:id (HTML) and GET /ui/job-page.js (its script, built from the functions in plots.ts and
// page-script.ts). The page itself is public and holds no data; it fetches everything from /v1 with the API key.
import type { FastifyInstance } from 'fastify';
import { escapeXml, formatBytes, layerErrorSvg, qualitySeries, qualityVsSizeSvg } from './plots.js';
import { jobPageMain } from './page-script.js';
import { searchFrontHtml } from './search-view.js';

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Job · onnx-compress</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 60rem; }
code { background: #f3f3f3; padding: 0 .3em; }
.state { font-weight: bold; padding: .1em .5em; border-radius: .3em; background: #eee; }
.state-succeeded { background: #c8f0c8; } .state-failed { background: #f6c4c4; } .state-cancelled { background: #ddd; }
.state-running { background: #cfe3ff; }
#progress { width: 24rem; height: 1rem; background: #eee; border-radius: .5rem; overflow: hidden; display: inline-block; vertical-align: middle; }
#bar { height: 100%; width: 0; background: #3b82f6; transition: width .2s; }
#error { color: #a00; white-space: pre-wrap; }
#events { font-family: monospace; font-size: .8em; max-height: 12rem; overflow: auto; }
svg { border: 1px solid #ddd; margin: .5rem 0; }
</style>
</head>
<body>
<h1>Job <code id="job-id"></code></h1>
<form id="key-form" hidden><label>API key <input id="key-input" type="password" autocomplete="off" size="50"></label>
<button type="submit">Show job</button></form>
<p>State: <span id="state" class="state">…</span> · created <span id="created"></span></p>
<p><span id="progress" data-percent="0"><span id="bar" style="display:block"></span></span> <span id="percent"></span>
<span id="stage"></span> <span id="layer"></span></p>
<p id="error" hidden></p>
<h2>Artifacts</h2><ul id="artifacts"></ul>
<section id="search" hidden><h2>Search</h2><img id="pareto" alt="pareto.svg: quality vs size of every trial"><div id="search-table"></div></section>
<section id="plots" hidden><h2>Report</h2><div id="quality-plot"></div><div id="layer-plot"></div></section>
<details><summary>Events</summary><ul id="events"></ul></details>
<p><a href="/docs">API documentation</a></p>
<script src="/ui/job-page.js"></script>
</body>
</html>
`;

/** The browser script: every plot function plus the page's main function, from their compiled sources. */
export function jobPageScript(): string {
  const fns = [escapeXml, formatBytes, qualitySeries, qualityVsSizeSvg, layerErrorSvg, searchFrontHtml, jobPageMain];
  return (
    '"use strict";\n' +
    // esbuild (through tsx) may wrap functions in __name(...) to keep their names; in the browser it is identity.
    'var __name = function (f) { return f; };\n' +
    fns.map((f) => f.toString()).join('\n\n') +
    '\n\njobPageMain();\n'
  );
}

export function createUiRoutes() {
  return async function uiRoutes(app: FastifyInstance) {
    let script: string | null = null;
    const security = {
      'content-security-policy':
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'self'",
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    };
    app.get('/jobs/:id', { schema: { hide: true } }, async (_request, reply) =>
      reply.headers(security).type('text/html; charset=utf-8').send(PAGE),
    );
    app.get('/ui/job-page.js', { schema: { hide: true } }, async (_request, reply) => {
      script ??= jobPageScript();
      return reply.headers(security).type('text/javascript; charset=utf-8').send(script);
    });
  };
}
