// The rolling restart's plan (pure): a fresh run takes every twin by number; an unfinished one is
// resumed without the twins it did or whose tor started since it began.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planRestart, type InstanceStatus, type RestartState } from '../src/supervisor/index.js';

const twin = (name: string, index: number, startedAt: number | null): InstanceStatus => ({
  name,
  index,
  state: 'running',
  pid: 1,
  restarts: 0,
  startedAt,
  bootstrappedAt: null,
  bootstrap: 100,
  fingerprint: null,
  orPort: null,
  extOrPort: `127.0.4.${index}:10100`,
  extOrPortCookie: '/x',
  lastExit: null,
});
const began = Date.parse('2026-12-01T10:00:00Z');
const run = (over: Partial<RestartState>): RestartState => ({
  startedAt: new Date(began).toISOString(),
  order: ['b1', 'b2', 'b3'],
  done: [],
  current: null,
  finishedAt: null,
  error: null,
  ...over,
});

test('a fresh run: every twin, by number, none done', () => {
  const p = planRestart(null, [twin('b3', 3, 0), twin('b1', 1, 0), twin('b2', 2, 0)], new Date(began));
  assert.deepEqual(p.todo, ['b1', 'b2', 'b3']);
  assert.equal(p.resumed, false);
  assert.deepEqual(p.state.done, []);
});

test('a finished run is not resumed: the next is a fresh one', () => {
  const p = planRestart(run({ done: ['b1', 'b2', 'b3'], finishedAt: 'x' }), [twin('b1', 1, began + 1), twin('b2', 2, began + 2)], new Date(began + 10));
  assert.deepEqual(p.todo, ['b1', 'b2']);
  assert.equal(p.resumed, false);
});

test('an interrupted run: the twins done, and those whose tor started since it began, are skipped; new twins come last', () => {
  const twins = [twin('b1', 1, began - 5), twin('b2', 2, began + 30), twin('b3', 3, began - 5), twin('b4', 4, began - 5)];
  const p = planRestart(run({ done: ['b1'], error: 'b2 did not bootstrap' }), twins, new Date(began + 60));
  assert.equal(p.resumed, true);
  assert.deepEqual(p.state.done, ['b1', 'b2']);
  assert.deepEqual(p.todo, ['b3', 'b4']);
  assert.equal(p.state.error, null);
  assert.equal(p.state.startedAt, new Date(began).toISOString(), 'the run keeps its start');
});

test('a twin removed since is dropped from the order', () => {
  const p = planRestart(run({ done: [] }), [twin('b1', 1, began - 1), twin('b3', 3, began - 1)], new Date(began + 1));
  assert.deepEqual(p.todo, ['b1', 'b3']);
});
