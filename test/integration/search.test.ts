// The search recipe through the service on the real Postgres and Redis with the real engine: POST /v1/jobs takes
// it (and refuses a bad one with a JSON pointer), progress carries the trial counter and the best point, a met
// budget stores model.onnx + pareto.svg + report.json, and an unreachable budget fails the job with
// `budget-unreachable` while its report.json and pareto.svg are still stored, listed and served.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../apps/api/app.js';
import { encodeNpz } from '../../packages/engine/data/npz.js';
import { startCompressWorker, type RunningWorker } from '../../workers/compress/worker.js';
import { SMALL_LM, tokenData, transformer } from '../unit/sparsity/models.js';
import { writeCase } from '../unit/sparsity/helpers.js';
import { openTestEnv, waitFor, type TestEnv } from './helpers.js';

const SPACE = { methods: ['quantize'], bits: [4, 8], groupSize: [32], schemes: ['rtn'] };
let env: TestEnv;
let app: FastifyInstance;
let worker: RunningWorker;
let dir: string;
const ids: { model?: string; calib?: string; eval?: string } = {};
const quiet = { info() {}, warn() {}, error() {} };

async function upload(url: string, payload: Buffer): Promise<string> {
  const res = await app.inject({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/octet-stream' },
    payload,
  });
  assert.ok(res.statusCode === 201 || res.statusCode === 200, res.body);
  return res.json().id as string;
}

async function submit(recipe: object) {
  return app.inject({
    method: 'POST',
    url: '/v1/jobs',
    payload: { modelId: ids.model, calibrationDatasetId: ids.calib, evalDatasetId: ids.eval, recipe },
  });
}

async function job(id: string) {
  return (await app.inject({ method: 'GET', url: `/v1/jobs/${id}` })).json();
}

before(async () => {
  env = await openTestEnv('search');
  app = await buildApp({ deps: env.platform, logger: false });
  worker = await startCompressWorker(env.platform, { progressFlushMs: 50, log: quiet });
  dir = await mkdtemp(join(tmpdir(), 'search-api-'));
  const lm = await writeCase(dir, 'lm', transformer(), { ids: tokenData(16) });
  ids.model = await upload('/v1/models?name=lm.onnx', await readFile(lm.modelPath));
  ids.calib = await upload('/v1/datasets?name=calib.npz', await readFile(lm.dataPath));
  ids.eval = await upload('/v1/datasets?name=eval.npz', Buffer.from(encodeNpz({ ids: tokenData(8, SMALL_LM, 77) })));
});

after(async () => {
  await worker?.close();
  await app?.close();
  await env?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

describe('search recipe through the API', () => {
  it('refuses a bad search recipe with a JSON pointer', async () => {
    const res = await submit({ method: 'search', budget: { metric: 'perplexity', maxRelativeIncrease: -1 } });
    assert.equal(res.statusCode, 400, res.body);
    assert.match(res.headers['content-type'] as string, /problem\+json/);
    assert.match(res.body, /budget/);
  });

  it('meets a budget: model.onnx, pareto.svg and report.json stored; progress had trial and best', async () => {
    const res = await submit({
      method: 'search',
      budget: { metric: 'perplexity', maxRelativeIncrease: 0.05 },
      space: SPACE,
      maxTrials: 4,
    });
    assert.equal(res.statusCode, 202, res.body);
    const id = res.json().id as string;
    let sawTrial = false;
    const done = await waitFor(async () => {
      const j = await job(id);
      if (j.progressDetail?.trial) sawTrial = true;
      return ['succeeded', 'failed'].includes(j.state) ? j : null;
    }, 120_000);
    assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
    assert.deepEqual(
      done.artifacts.map((a: { name: string }) => a.name),
      ['model.onnx', 'pareto.svg', 'report.json'],
    );
    assert.ok(sawTrial || done.progressDetail?.trial, 'progress carried the trial counter');
    const svg = await app.inject({ method: 'GET', url: `/v1/jobs/${id}/artifacts/pareto.svg` });
    assert.equal(svg.statusCode, 200);
    assert.match(svg.body, /<svg[^>]*>[\s\S]*class="chosen"/);
    const report = (await app.inject({ method: 'GET', url: `/v1/jobs/${id}/artifacts/report.json` })).json();
    assert.equal(report.search.chosen.withinBudget, true);
    assert.ok(report.search.front.length >= 1);
  });

  it('an unreachable budget fails the job with budget-unreachable and keeps report.json and pareto.svg', async () => {
    const res = await submit({
      method: 'search',
      budget: { metric: 'fidelity', maxOutputError: 0 },
      space: SPACE,
      perLayer: false,
      maxTrials: 2,
    });
    assert.equal(res.statusCode, 202, res.body);
    const id = res.json().id as string;
    const done = await waitFor(async () => {
      const j = await job(id);
      return ['succeeded', 'failed'].includes(j.state) ? j : null;
    }, 120_000);
    assert.equal(done.state, 'failed');
    assert.equal(done.error.code, 'budget-unreachable');
    assert.equal(done.attempts, 1);
    assert.deepEqual(
      done.artifacts.map((a: { name: string }) => a.name),
      ['pareto.svg', 'report.json'],
    );
    const report = (await app.inject({ method: 'GET', url: `/v1/jobs/${id}/artifacts/report.json` })).json();
    assert.equal(report.failed.code, 'budget-unreachable');
    assert.equal(report.search.chosen, null);
    assert.equal(report.search.points.length, 2);
    const svg = await app.inject({ method: 'GET', url: `/v1/jobs/${id}/artifacts/pareto.svg` });
    assert.equal(svg.statusCode, 200);
    assert.match(svg.body, /class="budget"/);
  });
});
