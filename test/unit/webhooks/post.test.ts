import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { postToTarget } from '../../../packages/platform/webhooks/post.js';

async function withServer(handler: http.RequestListener, fn: (port: number) => Promise<void>): Promise<void> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    await fn((server.address() as AddressInfo).port);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}

test('connects to the given address without resolving the hostname, keeping Host', async () => {
  let seen: { host?: string; body?: string; sig?: string } = {};
  await withServer(
    (req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        seen = { host: req.headers.host, body, sig: String(req.headers['webhook-signature']) };
        res.writeHead(204).end();
      });
    },
    async (port) => {
      // "receiver.invalid" cannot resolve: the request only arrives because the checked address is used directly.
      const url = new URL(`http://receiver.invalid:${port}/hooks?x=1`);
      const r = await postToTarget(
        { url, address: '127.0.0.1', family: 4 },
        { 'webhook-signature': 'v1,abc' },
        '{"a":1}',
      );
      assert.equal(r.status, 204);
      assert.equal(r.error, null);
      assert.ok(r.latencyMs >= 0);
      assert.equal(seen.host, `receiver.invalid:${port}`);
      assert.equal(seen.body, '{"a":1}');
      assert.equal(seen.sig, 'v1,abc');
    },
  );
});

test('redirects are not followed: a 302 is returned as the answer', async () => {
  let hits = 0;
  await withServer(
    (req, res) => {
      hits++;
      res.writeHead(302, { location: 'http://169.254.169.254/' }).end('moved');
    },
    async (port) => {
      const r = await postToTarget(
        { url: new URL(`http://127.0.0.1:${port}/`), address: '127.0.0.1', family: 4 },
        {},
        '{}',
      );
      assert.equal(r.status, 302);
      assert.equal(r.body, 'moved');
      assert.equal(hits, 1);
    },
  );
});

test('a receiver that never answers hits the response timeout', async () => {
  await withServer(
    () => {
      /* never respond */
    },
    async (port) => {
      const r = await postToTarget(
        { url: new URL(`http://127.0.0.1:${port}/`), address: '127.0.0.1', family: 4 },
        {},
        '{}',
        { responseTimeoutMs: 300 },
      );
      assert.equal(r.status, null);
      assert.match(r.error ?? '', /response timeout after 300 ms/);
      assert.ok(r.latencyMs >= 250 && r.latencyMs < 5000, `latency ${r.latencyMs}`);
    },
  );
});

test('a refused connection is an error, not a status; large bodies are capped', async () => {
  let port = 0;
  await withServer(
    (req, res) => res.end('x'.repeat(100_000)),
    async (p) => {
      port = p;
      const r = await postToTarget(
        { url: new URL(`http://127.0.0.1:${p}/`), address: '127.0.0.1', family: 4 },
        {},
        '{}',
        {
          maxBodyBytes: 10,
        },
      );
      assert.equal(r.status, 200);
      assert.equal(r.body, 'x'.repeat(10));
    },
  );
  const down = await postToTarget(
    { url: new URL(`http://127.0.0.1:${port}/`), address: '127.0.0.1', family: 4 },
    {},
    '{}',
  );
  assert.equal(down.status, null);
  assert.match(down.error ?? '', /ECONNREFUSED/);
});
