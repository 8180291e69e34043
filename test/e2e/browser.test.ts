// The service in a real browser: Debian's chromium, headless, driven by playwright-core (no browser download).
// Open /docs, "Authorize" with an API key, upload a model and create a job through Swagger UI's "Try it out",
// then follow the job on its page (/jobs/:id) to `succeeded`: the numbers, the plots, layers by node name, artifacts
// that download with the key, a readable event log; a second job (4-bit, random calibration) shows its warning and
// its latency table; the model page lists both jobs on one plot; without a key the page says one is needed and how
// to get one. Screenshots are kept under test/.artifacts/browser/ (each checked by DOM assertions). Skips, saying
// why, where /usr/bin/chromium is missing (`apt-get install -y chromium`).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { createApiKey } from '../../packages/platform/auth/keys.js';
import { startTestService, type TestService } from '../integration/auth-support.js';
import {
  createTestDatabase,
  dropRedisPrefix,
  REDIS_URL,
  uniquePrefix,
  type TestDatabase,
} from '../integration/webhooks-support.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
const root = new URL('../../', import.meta.url).pathname;
const artifacts = new URL('../.artifacts/browser/', import.meta.url).pathname;
const MODEL = new URL('../fixtures/soup/dense.onnx', import.meta.url).pathname;
/** Calibration + evaluation data for that model (inputs and labels), so the report has quality and layer errors. */
const DATA = new URL('../fixtures/soup/val.npz', import.meta.url).pathname;
const skip = existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM} (install Debian's: apt-get install -y chromium)`;
if (skip) console.log(`# SKIP browser test: ${skip}`);

type Page = import('playwright-core').Page;

/** The job page of a succeeded job: its numbers, layers by node name, a readable event log, a link to the model. */
async function checkResultPage(page: Page, jobId: string, datasetId: string) {
  const row = (key: string) => page.locator(`#summary tr[data-key="${key}"] td`).innerText();
  assert.match(await row('size'), /^[\d.]+ (B|KiB|MiB) → [\d.]+ (B|KiB|MiB) \([\d.]+× the dense size\)$/);
  assert.match(await row('sparsity'), /^\d+(\.\d)?% of \d+ weights$/);
  assert.match(await row('relError'), /^\d/);
  assert.match(await row('top1'), /%$/);
  // Named by the dataset's name and id (Swagger UI's try-out sends its placeholder as the name), not a worker path.
  const ds = (await (
    await fetch(`${svc.url}/v1/datasets/${datasetId}`, { headers: { authorization: `Bearer ${apiKey}` } })
  ).json()) as { name: string };
  assert.ok((await row('data')).startsWith(`dataset ${ds.name} (${datasetId})`), await row('data'));
  // Layers by the node that uses each weight, as the report names them.
  const report = (await (
    await fetch(`${svc.url}/v1/jobs/${jobId}/artifacts/report.json`, { headers: { authorization: `Bearer ${apiKey}` } })
  ).json()) as { layers: { name: string; node: string }[] };
  const labels = await page.locator('#layers tr td:first-child').allInnerTexts();
  assert.deepEqual(
    labels,
    report.layers.map((l) => l.node || l.name),
  );
  assert.ok(labels.length > 0);
  // A readable event log and recipe: no JSON anywhere on the page.
  await assertNoRawJson(page);
  assert.match(await page.locator('#recipe').innerText(), /criterion\s+wanda/);
  assert.equal(await page.locator('#model-link').getAttribute('href'), `/models/${await modelIdOf(jobId)}`);
}

async function modelIdOf(jobId: string): Promise<string> {
  const res = await fetch(`${svc.url}/v1/jobs/${jobId}`, { headers: { authorization: `Bearer ${apiKey}` } });
  return ((await res.json()) as { modelId: string }).modelId;
}

async function assertNoRawJson(page: Page) {
  const text = await page.locator('body').innerText();
  assert.doesNotMatch(text, /\{"|":\s*[{["\d]/, 'no raw JSON on the page');
  for (const e of await page.locator('#events li').allInnerTexts()) assert.doesNotMatch(e, /[{}]/, e);
}

/** Clicks the model.onnx link: the browser saves the file fetched with the key, byte for byte. */
async function checkDownload(page: Page, jobId: string) {
  const job = (await (
    await fetch(`${svc.url}/v1/jobs/${jobId}`, { headers: { authorization: `Bearer ${apiKey}` } })
  ).json()) as { artifacts: { name: string; sizeBytes: number }[] };
  const [download] = await Promise.all([
    page.waitForEvent('download', { timeout: 30_000 }),
    page.locator('a[data-artifact="model.onnx"]').click(),
  ]);
  assert.equal(download.suggestedFilename(), 'model.onnx');
  const saved = `${artifacts}downloaded-model.onnx`;
  await download.saveAs(saved);
  assert.equal(statSync(saved).size, job.artifacts.find((a) => a.name === 'model.onnx')!.sizeBytes);
  // The same link without the key is refused: the page's fetch is what carried it.
  const bare = await fetch(`${svc.url}/v1/jobs/${jobId}/artifacts/model.onnx`);
  assert.equal(bare.status, 401);
  assert.ok(
    readFileSync(saved).equals(
      Buffer.from(
        await (
          await fetch(`${svc.url}/v1/jobs/${jobId}/artifacts/model.onnx`, {
            headers: { authorization: `Bearer ${apiKey}` },
          })
        ).arrayBuffer(),
      ),
    ),
  );
}

async function submitQuantize(modelId: string, datasetId: string): Promise<string> {
  const res = await fetch(`${svc.url}/v1/jobs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      modelId,
      evalDatasetId: datasetId,
      recipe: {
        method: 'quantize',
        quant: { bits: 4, groupSize: 16 },
        format: 'qdq',
        calibration: { random: true, samples: 8 },
      },
    }),
  });
  assert.equal(res.status, 202, await res.clone().text());
  return ((await res.json()) as { id: string }).id;
}

let tdb: TestDatabase;
let svc: TestService;
let worker: ChildProcess | undefined;
const prefix = uniquePrefix('ui');
let apiKey = '';

before(async () => {
  if (skip) return;
  mkdirSync(artifacts, { recursive: true });
  tdb = await createTestDatabase('ui');
  svc = await startTestService(tdb.url, prefix);
  apiKey = (await createApiKey(svc.platform.db, { tenant: 'browser', name: 'ui-test' })).key;
  worker = spawn(process.execPath, ['--import', 'tsx', 'test/e2e/browser-worker-process.ts'], {
    cwd: root,
    env: {
      ...process.env,
      DATABASE_URL: tdb.url,
      REDIS_URL,
      QUEUE_PREFIX: prefix,
      STORAGE_DIR: svc.platform.config.storage.kind === 'local' ? svc.platform.config.storage.dir : '',
      WORK_DIR: svc.platform.config.workDir,
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    worker!.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    worker!.once('exit', (code) => reject(new Error(`worker exited with ${code}`)));
  });
});

after(async () => {
  if (worker && worker.exitCode === null) {
    worker.kill('SIGTERM');
    await new Promise((r) => worker!.once('exit', r));
  }
  await svc?.close();
  if (!skip) await dropRedisPrefix(prefix);
  await tdb?.drop();
});

test(
  'docs → Authorize → upload a model → create a job → the job page shows it succeed with plots',
  { skip },
  async () => {
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    const shot = (name: string) => page.screenshot({ path: `${artifacts}${name}.png`, fullPage: true });
    try {
      await page.goto(`${svc.url}/docs`);
      await page.locator('.swagger-ui .information-container').waitFor({ timeout: 30_000 });

      // Authorize with the bearer key.
      await page.locator('.auth-wrapper button.authorize').click();
      const modal = page.locator('.modal-ux');
      await modal.locator('input').first().fill(apiKey);
      await modal.locator('button.authorize').click();
      await modal.locator('button.btn-done').click();
      await shot('1-docs-authorized');

      // POST /v1/models: multipart upload of the model file.
      const upload = page.locator('.opblock-post').filter({ has: page.locator('[data-path="/v1/models"]') });
      await upload.locator('.opblock-summary').click();
      await upload.locator('button.try-out__btn').click();
      await upload.locator('input[type="file"]').first().setInputFiles(MODEL);
      await upload.locator('button.execute').click();
      const uploadStatus = upload.locator('.live-responses-table .response .response-col_status');
      await uploadStatus.waitFor({ timeout: 30_000 });
      assert.equal((await uploadStatus.innerText()).trim(), '201');
      const model = JSON.parse(
        await upload.locator('.live-responses-table .highlight-code pre').first().innerText(),
      ) as {
        id: string;
      };
      assert.match(model.id, /^[0-9a-f-]{36}$/);
      await shot('2-model-uploaded');

      // POST /v1/datasets: the calibration data, the same way.
      const data = page.locator('.opblock-post').filter({ has: page.locator('[data-path="/v1/datasets"]') });
      await data.locator('.opblock-summary').click();
      await data.locator('button.try-out__btn').click();
      await data.locator('input[type="file"]').first().setInputFiles(DATA);
      await data.locator('button.execute').click();
      const dataStatus = data.locator('.live-responses-table .response .response-col_status');
      await dataStatus.waitFor({ timeout: 30_000 });
      assert.equal((await dataStatus.innerText()).trim(), '201');
      const dataset = JSON.parse(
        await data.locator('.live-responses-table .highlight-code pre').first().innerText(),
      ) as {
        id: string;
      };

      // POST /v1/jobs with a 2:4 recipe.
      const submit = page.locator('.opblock-post').filter({ has: page.locator('[data-path="/v1/jobs"]') });
      await submit.locator('.opblock-summary').click();
      await submit.locator('button.try-out__btn').click();
      await submit.locator('textarea.body-param__text').fill(
        JSON.stringify(
          {
            modelId: model.id,
            calibrationDatasetId: dataset.id,
            evalDatasetId: dataset.id,
            recipe: { method: 'sparsity', pattern: '2:4', criterion: 'wanda' },
          },
          null,
          2,
        ),
      );
      await submit.locator('button.execute').click();
      const submitStatus = submit.locator('.live-responses-table .response .response-col_status');
      await submitStatus.waitFor({ timeout: 30_000 });
      assert.equal((await submitStatus.innerText()).trim(), '202');
      const job = JSON.parse(await submit.locator('.live-responses-table .highlight-code pre').first().innerText()) as {
        id: string;
        state: string;
      };
      assert.equal(job.state, 'queued');
      await shot('3-job-created');

      // The job page: key (from Swagger's persisted authorization, or typed in), live state, then the plots.
      await page.goto(`${svc.url}/jobs/${job.id}`);
      const keyForm = page.locator('#key-form');
      if (await keyForm.isVisible()) {
        await page.locator('#key-input').fill(apiKey);
        await keyForm.locator('button[type="submit"]').click();
      }
      await page.locator('#state[data-state="succeeded"]').waitFor({ timeout: 90_000 });
      await page.locator('#plots[data-ready="true"]').waitFor({ timeout: 30_000 });
      assert.equal(await page.locator('#progress').getAttribute('data-percent'), '100');
      assert.equal(await page.locator('svg[data-plot="quality-vs-size"]').count(), 1);
      assert.equal(await page.locator('svg[data-plot="layer-error"]').count(), 1);
      const bars = await page.locator('svg[data-plot="layer-error"] rect[data-layer]').count();
      assert.ok(bars >= 1, `per-layer bars: ${bars}`);
      const artifactsListed = await page.locator('#artifacts li').allInnerTexts();
      assert.ok(
        artifactsListed.some((t) => t.startsWith('model.onnx ')),
        artifactsListed.join(' | '),
      );
      assert.equal(await page.locator('#error').isVisible(), false);
      await checkResultPage(page, job.id, dataset.id);
      await shot('4-job-succeeded');
      await checkDownload(page, job.id);

      // A second job: 4-bit with random calibration data: a warning, and a latency table.
      const second = await submitQuantize(model.id, dataset.id);
      await page.goto(`${svc.url}/jobs/${second}`);
      await page.locator('#state[data-state="succeeded"]').waitFor({ timeout: 120_000 });
      await page.locator('#plots[data-ready="true"]').waitFor({ timeout: 30_000 });
      assert.equal(await page.locator('#warnings').isVisible(), true);
      const warnings = await page.locator('#warning-list li').allInnerTexts();
      assert.ok(
        warnings.some((w) => /random data/.test(w)),
        warnings.join(' | '),
      );
      // Warnings come first: above the numbers.
      const warnBox = await page.locator('#warnings').boundingBox();
      const resultBox = await page.locator('#result').boundingBox();
      assert.ok(warnBox && resultBox && warnBox.y < resultBox.y, 'warnings above the result');
      assert.equal(await page.locator('#latency-section').isVisible(), true);
      const latencyRows = await page.locator('#latency tr').count();
      assert.ok(latencyRows >= 2, `latency rows: ${latencyRows}`);
      assert.match(await page.locator('#latency').innerText(), /\d+(\.\d+)? \/ \d+(\.\d+)? ms/);
      assert.match(await page.locator('#summary tr[data-key="bits"] td').innerText(), /^\d+(\.\d+)?$/);
      await shot('5-job-warnings-latency');

      // The model page, reached from the job page's link: inspection, both jobs, one plot with both.
      await page.locator('#model-link').click();
      await page.waitForURL(`**/models/${model.id}`);
      await page.locator('#model-plots[data-ready="true"]').waitFor({ timeout: 30_000 });
      assert.match(await page.locator('#inspection').innerText(), /parameters/);
      const links = await page.locator('#jobs a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
      assert.deepEqual(links.sort(), [`/jobs/${job.id}`, `/jobs/${second}`].sort());
      const plotted = await page
        .locator('svg[data-plot="quality-vs-size"] [data-job]')
        .evaluateAll((ps) => [...new Set(ps.map((p) => p.getAttribute('data-job')))]);
      assert.deepEqual(plotted.sort(), ['dense', job.id, second].sort());
      assert.equal(await page.locator('svg[data-plot="quality-vs-latency"]').count(), 1);
      await assertNoRawJson(page);
      await shot('6-model-page');

      // Without a key: the page says one is needed and how to get one, and shows no half-empty job.
      const fresh = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      const anon = await fresh.newPage();
      await anon.goto(`${svc.url}/jobs/${job.id}`);
      await anon.locator('#need-key').waitFor({ state: 'visible', timeout: 10_000 });
      assert.match(await anon.locator('#need-key').innerText(), /needs an API key[\s\S]*keys create/);
      assert.equal(await anon.locator('#job').isVisible(), false);
      await anon.screenshot({ path: `${artifacts}7-no-key.png`, fullPage: true });
      await fresh.close();
    } catch (e) {
      await shot('failure').catch(() => undefined);
      throw e;
    } finally {
      await browser.close();
    }
  },
);
