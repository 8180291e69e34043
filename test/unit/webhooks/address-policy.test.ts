import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkAddress, parseAllowList } from '../../../packages/platform/webhooks/address-policy.js';

const none = parseAllowList('');

const refused: [string, string][] = [
  ['127.0.0.1', 'loopback'],
  ['127.255.0.9', 'loopback'],
  ['10.0.0.1', 'private'],
  ['10.255.255.255', 'private'],
  ['172.16.0.1', 'private'],
  ['172.31.255.254', 'private'],
  ['192.168.1.1', 'private'],
  ['169.254.169.254', 'linkLocal'],
  ['169.254.0.1', 'linkLocal'],
  ['100.64.0.1', 'carrierGradeNat'],
  ['0.0.0.0', 'unspecified'],
  ['224.0.0.1', 'multicast'],
  ['255.255.255.255', 'broadcast'],
  ['::1', 'loopback'],
  ['::', 'unspecified'],
  ['fe80::1', 'linkLocal'],
  ['febf::1', 'linkLocal'],
  ['fc00::1', 'uniqueLocal'],
  ['fd12:3456::1', 'uniqueLocal'],
  ['::ffff:127.0.0.1', 'ipv4Mapped(loopback)'],
  ['::ffff:169.254.169.254', 'ipv4Mapped(linkLocal)'],
  ['::ffff:7f00:1', 'ipv4Mapped(loopback)'],
  ['64:ff9b::7f00:1', 'rfc6052'],
  ['2002:7f00:1::', '6to4'],
  ['::7f00:1', 'ipv4Compatible'],
];

for (const [address, range] of refused) {
  test(`refuses ${address} (${range})`, () => {
    assert.deepEqual(checkAddress(address, none), { allowed: false, range });
  });
}

for (const address of ['8.8.8.8', '172.32.0.1', '172.15.255.255', '100.128.0.1', '2606:4700:4700::1111']) {
  test(`allows public ${address}`, () => assert.deepEqual(checkAddress(address, none), { allowed: true }));
}

test('the allow-list admits CIDRs and single IPs, nothing more', () => {
  const allow = parseAllowList(' 10.0.0.0/8 , ::1, 127.0.0.1 ,hooks.internal');
  assert.deepEqual(checkAddress('10.2.3.4', allow), { allowed: true });
  assert.deepEqual(checkAddress('127.0.0.1', allow), { allowed: true });
  assert.deepEqual(checkAddress('::ffff:10.9.9.9', allow), { allowed: true });
  assert.deepEqual(checkAddress('::1', allow), { allowed: true });
  assert.deepEqual(checkAddress('127.0.0.2', allow), { allowed: false, range: 'loopback' });
  assert.deepEqual(checkAddress('192.168.0.1', allow), { allowed: false, range: 'private' });
  assert.ok(allow.hosts.has('hooks.internal'));
});

test('a bad CIDR in the allow-list is a configuration error', () => {
  assert.throws(() => parseAllowList('10.0.0.0/99'), /not a valid CIDR/);
});
