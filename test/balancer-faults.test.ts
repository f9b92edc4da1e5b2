// Fault injection into the engine (issue 10, audit: unchecked results). The engine is built here
// with -DENGINE_FAULTS (engine.h: ENGINE_FAULT=NAME:N fails the Nth call at that point, and the
// engine's lock becomes error-checking) and run in a child process (test/fixtures/fault-balancer.ts)
// per case: an allocation that fails under memory pressure ends what it was for, cleanly, and the
// engine serves on. Runs inside scripts/netns.sh (loopback only).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FIXTURE = fileURLToPath(new URL('./fixtures/fault-balancer.js', import.meta.url));
let dir: string;
let addon: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'balancer-faults-'));
  addon = join(dir, 'engine-faults.node');
  const gyp = await readFile(join(ROOT, 'binding.gyp'), 'utf8');
  const sources = [...gyp.matchAll(/"(src\/balancer\/native\/[a-z_]+\.c)"/g)].map((m) => join(ROOT, m[1]!));
  const nodeInclude = existsSync('/usr/include/node/node_api.h') ? '/usr/include/node' : join(process.execPath, '../../include/node');
  await execa('gcc', ['-shared', '-fPIC', '-O1', '-g', '-Wall', '-Wextra', '-DENGINE_FAULTS', '-DNODE_GYP_MODULE_NAME=bind_no_port', `-I${nodeInclude}`, ...sources, '-o', addon, '-lpthread']);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function fixture(mode: 'stats' | 'session', fault: string) {
  const r = await execa(process.execPath, [FIXTURE, mode], { reject: false, all: true, env: { BRIDGECTL_ADDON: addon, ENGINE_FAULT: fault }, timeout: 60_000 });
  assert.equal(r.exitCode, 0, `the balancer process with ENGINE_FAULT=${fault} exited with ${r.exitCode} (${r.signal ?? 'no signal'}):\n${r.all}`);
  const line = r.stdout.trim().split('\n').pop()!;
  return JSON.parse(line) as unknown;
}

test('engineStats: its buffer is allocated outside the engine lock, and a failed allocation is an error, not a write through garbage', async () => {
  const r = (await fixture('stats', 'stats-buffer:1')) as { first: string; second: string };
  assert.equal(r.first, 'engineStats: out of memory');
  assert.equal(r.second, 'ok', 'the next stats call works');
});

interface Session {
  ok: boolean;
  ms: number;
  error?: string;
}

test('a failed queueing allocation at any point of a session closes that session at once (no hang until a timeout), and the next sessions work', async () => {
  const failedFirst: number[] = [];
  for (let n = 1; n <= 16; n++) {
    const r = (await fixture('session', `queue:${n}`)) as { sessions: Session[]; log: string[] };
    const what = `ENGINE_FAULT=queue:${n}: ${JSON.stringify(r.sessions)}\n${r.log.join('\n')}`;
    // A session queues a handful of times: the Nth call falls into one of the three sessions.
    const failed = r.sessions.findIndex((s) => !s.ok);
    assert.ok(failed >= 0, `one session met the fault; ${what}`);
    assert.ok(
      r.sessions.every((s, i) => s.ok === (i !== failed)),
      `only that session failed, the ones after it work; ${what}`,
    );
    // The dial gives up after 10 s and the handshake timeout is 20 s: a session left hanging shows.
    assert.ok(r.sessions[failed]!.ms < 5_000, `the session failed only after ${r.sessions[failed]!.ms.toFixed(0)} ms; ${what}`);
    assert.ok(
      r.log.some((l) => l.includes('out of memory')),
      `the engine says why; ${what}`,
    );
    if (failed === 0) failedFirst.push(n);
  }
  // The greeting is the first thing queued; each point on the way to the relay is a call.
  assert.ok(failedFirst.includes(1), `the greeting's queueing failed the session (first session failed at ${failedFirst})`);
  assert.ok(failedFirst.length >= 6, `queueing points on a session's path: ${failedFirst}`);
});
