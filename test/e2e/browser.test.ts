// The service in a real browser: Debian's chromium, headless, driven by playwright-core (no browser download).
// Open /docs, "Authorize" with an API key, upload a model and create a job through Swagger UI's "Try it out",
// then follow the job on its page (/jobs/:id) to `succeeded` with the report's SVG plots. Screenshots are kept under
// test/.artifacts/browser/. Skips, saying why, where /usr/bin/chromium is missing (`apt-get install -y chromium`).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
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
      await shot('4-job-succeeded');
    } catch (e) {
      await shot('failure').catch(() => undefined);
      throw e;
    } finally {
      await browser.close();
    }
  },
);
