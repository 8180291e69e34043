// The HTML of the job page (/jobs/:id) and the model page (/models/:id). Both are public and hold no data: their
// scripts fetch everything from /v1 with the API key, and say plainly when there is no key and how to get one.

const STYLE = `<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 64rem; }
code { background: #f3f3f3; padding: 0 .3em; }
nav { font-size: .9em; margin-bottom: 1rem; }
.state { font-weight: bold; padding: .1em .5em; border-radius: .3em; background: #eee; }
.state-succeeded { background: #c8f0c8; } .state-failed { background: #f6c4c4; } .state-cancelled { background: #ddd; }
.state-running { background: #cfe3ff; }
#progress { width: 24rem; height: 1rem; background: #eee; border-radius: .5rem; overflow: hidden; display: inline-block; vertical-align: middle; }
#bar { height: 100%; width: 0; background: #3b82f6; transition: width .2s; }
#error { color: #a00; white-space: pre-wrap; font-weight: bold; }
#need-key { border: 2px solid #d9a400; background: #fff8e0; padding: .5rem 1rem; border-radius: .4rem; }
#warnings { border: 2px solid #d9a400; background: #fff8e0; padding: .2rem 1rem; border-radius: .4rem; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { text-align: left; padding: .15rem .6rem; border-bottom: 1px solid #e4e4e4; vertical-align: top; }
td.slower { color: #a00; font-weight: bold; }
#events { font-size: .85em; max-height: 14rem; overflow: auto; }
svg { border: 1px solid #ddd; margin: .5rem 0; }
</style>`;

const NEED_KEY = `<section id="need-key" hidden>
<p><strong>This page needs an API key.</strong> <span id="need-key-why"></span> It reads the job through the API,
and every <code>/v1</code> route needs <code>Authorization: Bearer &lt;key&gt;</code>.</p>
<p>To get one, run on the server <code>npx onnx-compress keys create --tenant NAME</code> (it prints the key, <code>oc_…</code>,
once), or use the key you gave to <a href="/docs">Swagger UI</a>'s "Authorize" (this page reuses it). The key stays
in this browser tab.</p>
<form id="key-form"><label>API key <input id="key-input" type="password" autocomplete="off" size="50"></label>
<button type="submit">Use this key</button></form>
</section>
<p id="error" hidden></p>`;

export const JOB_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Job · onnx-compress</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
${STYLE}
</head>
<body>
<nav><a href="/docs">API documentation</a></nav>
<h1>Job <code id="job-id"></code></h1>
${NEED_KEY}
<section id="job" hidden>
<p>State: <span id="state" class="state">…</span> · model <a id="model-link" href="#"></a> · created
<span id="created"></span> · execution provider <span id="ep"></span></p>
<p><span id="progress" data-percent="0"><span id="bar" style="display:block"></span></span> <span id="percent"></span>
<span id="stage"></span> <span id="layer"></span></p>
<section id="warnings" hidden><h2>Warnings</h2><ul id="warning-list"></ul></section>
<section id="result" hidden>
<h2>Result</h2><table id="summary"></table>
<section id="latency-section" hidden><h3>Latency, dense vs compressed</h3><p id="latency-note"></p><table id="latency"></table></section>
<section id="stages-section" hidden><h3>Stages</h3><table id="stages"></table></section>
</section>
<section id="search" hidden><h2>Search</h2><img id="pareto" alt="pareto.svg: quality vs size of every trial"><div id="search-table"></div></section>
<section id="plots" hidden><h2>Report</h2><div id="quality-plot"></div><div id="layer-plot"></div>
<h3>Layers</h3><table id="layers"></table></section>
<h2>Recipe</h2><table id="recipe"></table>
<h2>Artifacts</h2><ul id="artifacts"></ul>
<details open><summary>Events</summary><ol id="events"></ol></details>
</section>
<script src="/ui/job-page.js"></script>
</body>
</html>
`;

export const MODEL_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Model · onnx-compress</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
${STYLE}
</head>
<body>
<nav><a href="/docs">API documentation</a></nav>
<h1>Model <span id="model-name"></span> <code id="model-id"></code></h1>
${NEED_KEY}
<section id="model" hidden>
<h2>Inspection</h2><table id="inspection"></table>
<h2>Jobs on this model</h2><p id="no-jobs" hidden>No job has run on this model yet.</p><table id="jobs"></table>
<section id="model-plots"><div id="size-plot"></div><div id="latency-plot"></div></section>
</section>
<script src="/ui/model-page.js"></script>
</body>
</html>
`;
