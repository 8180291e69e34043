import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_RETRY_SCHEDULE,
  parseRetrySchedule,
  retryDelayMs,
} from '../../../packages/platform/webhooks/retry-schedule.js';

test('parses units and the default spans hours', () => {
  assert.deepEqual(parseRetrySchedule('100ms, 2s,1.5m,1h'), [100, 2000, 90_000, 3_600_000]);
  assert.deepEqual(parseRetrySchedule(''), []);
  const d = parseRetrySchedule(DEFAULT_RETRY_SCHEDULE);
  assert.equal(d.length, 7);
  assert.ok(d.reduce((a, b) => a + b, 0) > 24 * 3_600_000);
  for (let i = 1; i < d.length; i++) assert.ok(d[i] >= d[i - 1], 'non-decreasing');
});

test('bad entries are errors', () => {
  assert.throws(() => parseRetrySchedule('5x'), /not like/);
  assert.throws(() => parseRetrySchedule('5s,,5s'), /not like/);
  assert.throws(() => parseRetrySchedule('200h'), /over 7 days/);
});

test('jitter stays within ±fraction and is exact at the extremes', () => {
  const s = [1000, 10_000];
  assert.equal(retryDelayMs(s, 1, 0), 1000);
  assert.equal(
    retryDelayMs(s, 2, 0.2, () => 0),
    8000,
  );
  assert.equal(
    retryDelayMs(s, 2, 0.2, () => 1),
    12_000,
  );
  assert.equal(retryDelayMs(s, 5, 0), 10_000, 'past the end repeats the last delay');
  for (let i = 0; i < 200; i++) {
    const d = retryDelayMs(s, 1, 0.5);
    assert.ok(d >= 500 && d <= 1500);
  }
});
