// The pages: GET /jobs/:id and /models/:id (HTML, pages.ts) and their scripts /ui/job-page.js and /ui/model-page.js,
// built from the functions of plots.ts, model-plots.ts, format.ts, search-view.ts, client.ts and the pages' main
// modules. The pages
// are public and hold no data; they fetch everything from /v1 with the API key.
import type { FastifyInstance } from 'fastify';
import * as client from './client.js';
import * as format from './format.js';
import * as modelPlots from './model-plots.js';
import { JOB_PAGE, MODEL_PAGE } from './pages.js';
import * as jobPage from './page-script.js';
import * as modelPage from './model-script.js';
import * as plots from './plots.js';
import * as searchView from './search-view.js';

/** Every exported function of the given modules, by name (types and values that are not functions are skipped). */
function functionsOf(...modules: Record<string, unknown>[]): ((...args: never[]) => unknown)[] {
  const out = new Map<string, (...args: never[]) => unknown>();
  for (const m of modules) {
    for (const [name, v] of Object.entries(m)) if (typeof v === 'function') out.set(name, v as never);
  }
  return [...out.values()];
}

/** A page script: the shared functions, the page's own, then a call of its main function. */
function pageScript(main: string, own: Record<string, unknown>): string {
  const fns = functionsOf(plots, modelPlots, format, searchView, client, own);
  return (
    '"use strict";\n' +
    // esbuild (through tsx) may wrap functions in __name(...) to keep their names; in the browser it is identity.
    'var __name = function (f) { return f; };\n' +
    fns.map((f) => f.toString()).join('\n\n') +
    `\n\n${main}();\n`
  );
}

export function jobPageScript(): string {
  return pageScript('jobPageMain', jobPage);
}

export function modelPageScript(): string {
  return pageScript('modelPageMain', modelPage);
}

export function createUiRoutes() {
  return async function uiRoutes(app: FastifyInstance) {
    const scripts: Record<string, string> = {};
    const security = {
      'content-security-policy':
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'self'",
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    };
    for (const [route, html] of [
      ['/jobs/:id', JOB_PAGE],
      ['/models/:id', MODEL_PAGE],
    ] as const) {
      app.get(route, { schema: { hide: true } }, async (_request, reply) =>
        reply.headers(security).type('text/html; charset=utf-8').send(html),
      );
    }
    for (const [route, build] of [
      ['/ui/job-page.js', jobPageScript],
      ['/ui/model-page.js', modelPageScript],
    ] as const) {
      app.get(route, { schema: { hide: true } }, async (_request, reply) => {
        scripts[route] ??= build();
        return reply.headers(security).type('text/javascript; charset=utf-8').send(scripts[route]);
      });
    }
  };
}
