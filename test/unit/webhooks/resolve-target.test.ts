import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAllowList } from '../../../packages/platform/webhooks/address-policy.js';
import { resolveWebhookTarget, type Lookup } from '../../../packages/platform/webhooks/resolve-target.js';

const none = parseAllowList('');
const fixed =
  (addrs: string[]): Lookup =>
  async () =>
    addrs.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));

for (const url of [
  'http://127.0.0.1:9/hook',
  'http://10.1.2.3/hook',
  'http://169.254.169.254/latest/meta-data/',
  'http://[::1]/',
  'http://[::ffff:127.0.0.1]/',
  'http://2130706433/', // WHATWG URL normalises this to 127.0.0.1
  'http://0x7f.1/',
  'http://localhost:8080/hook', // a hostname resolving to loopback, through the system resolver
]) {
  test(`SSRF: ${url} is refused when not allow-listed`, async () => {
    const r = await resolveWebhookTarget(url, none);
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.equal(r.code, 'ssrf-refused');
      assert.equal(r.retryable, false);
      assert.match(r.message, /WEBHOOK_ALLOW_HOSTS/);
    }
  });
}

test('a name resolving to a public and a private address is refused (every address is checked)', async () => {
  const r = await resolveWebhookTarget('https://hooks.example.com/x', none, fixed(['93.184.216.34', '10.0.0.5']));
  assert.equal(r.ok, false);
  if (!r.ok) assert.match(r.message, /10\.0\.0\.5 \(private\)/);
});

test('a public name resolves to the checked address the caller must connect to', async () => {
  const r = await resolveWebhookTarget('https://hooks.example.com/x?y=1', none, fixed(['93.184.216.34']));
  assert.ok(r.ok);
  if (r.ok) {
    assert.equal(r.target.address, '93.184.216.34');
    assert.equal(r.target.family, 4);
    assert.equal(r.target.url.hostname, 'hooks.example.com');
  }
});

test('allow-listed hosts and CIDRs are permitted', async () => {
  const byHost = await resolveWebhookTarget('http://localhost:1/', parseAllowList('localhost'));
  assert.ok(byHost.ok);
  const byCidr = await resolveWebhookTarget('http://127.0.0.1:1/', parseAllowList('127.0.0.0/8'));
  assert.ok(byCidr.ok);
  const otherCidr = await resolveWebhookTarget('http://10.0.0.1:1/', parseAllowList('127.0.0.0/8'));
  assert.equal(otherCidr.ok, false);
});

test('bad URLs and DNS failures are reported with codes', async () => {
  const ftp = await resolveWebhookTarget('ftp://example.com/', none);
  assert.ok(!ftp.ok && ftp.code === 'invalid-url');
  const creds = await resolveWebhookTarget('https://u:p@example.com/', none);
  assert.ok(!creds.ok && creds.code === 'invalid-url');
  const junk = await resolveWebhookTarget('not a url', none);
  assert.ok(!junk.ok && junk.code === 'invalid-url');
  const nx = await resolveWebhookTarget('https://nothing.invalid/', none, async () => {
    throw new Error('getaddrinfo ENOTFOUND nothing.invalid');
  });
  assert.ok(!nx.ok && nx.code === 'dns-failed' && nx.retryable);
});
