// The README's first command runs `bridgectl lab`: it must work, report, and leave nothing behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { cli, procName } from './helpers.js';

/** tor and obfs4proxy processes of a demo run (their command line or environment names its directory). */
const ours = (): number[] =>
  readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((p) => ['tor', 'obfs4proxy'].includes(procName(p)) && procText(p).includes('bridgectl-lab-'));

function procText(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8') + readFileSync(`/proc/${pid}/environ`, 'utf8');
  } catch {
    return '';
  }
}

test('bridgectl lab: twins behind the balancer with obfs4, real clients download, a table and a summary, nothing left', { timeout: 300_000 }, async () => {
  const before = new Set(readdirSync(tmpdir()).filter((d) => d.startsWith('bridgectl-lab-')));
  const r = await cli(['lab', '--instances', '2', '--clients', '3', '--rounds', '1']);
  assert.equal(r.exitCode, 0, r.all?.slice(-3000));
  const out = r.stdout;
  assert.match(out, /\[lab\] Bridge obfs4 127\.0\.0\.1:\d+ [0-9A-F]{40} cert=\S+ iat-mode=0/);
  assert.match(out, /^INSTANCE\s+STATE\s+PID/m);
  assert.match(out, /^labbridge1\s+serving/m);
  assert.match(out, /^labbridge2\s+serving/m);
  assert.match(out, /summary: 3 downloads verified, 0 failed, .* 2 of 2 twins carried sessions/);
  assert.match(out, /everything stopped/);
  assert.deepEqual(ours(), [], 'no tor or obfs4proxy of the demo left');
  const after = readdirSync(tmpdir()).filter((d) => d.startsWith('bridgectl-lab-') && !before.has(d));
  assert.deepEqual(after, [], 'its working directory is removed');
});
