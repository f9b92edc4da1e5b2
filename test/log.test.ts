// Logs that fit journald (issue 11, fault 3): a syslog priority on every line under systemd,
// text on a terminal, JSON for programs, one pid key per line, children's lines at fitting levels.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { chooseFormat, childLineLevel, formatError, formatLine, syslogPriority } from '../src/log/index.js';
import { CLI } from './helpers.js';

const line = (level: number, msg: string, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ level, time: Date.UTC(2026, 0, 2, 3, 4, 5, 6), pid: 42, msg, ...extra });

test('journal format: the syslog priority of each level on every line of the message', () => {
  assert.equal(syslogPriority(20), 7);
  assert.equal(syslogPriority(30), 6);
  assert.equal(syslogPriority(40), 4);
  assert.equal(syslogPriority(50), 3);
  assert.equal(syslogPriority(60), 2);
  assert.equal(formatLine(line(40, 'twin slow', { instance: 'b1' }), 'journal'), '<4>twin slow instance=b1\n');
  assert.equal(
    formatLine(line(50, 'new config rejected:\n/etc/b.yaml:3: instnces: unknown key'), 'journal'),
    '<3>new config rejected:\n<3>/etc/b.yaml:3: instnces: unknown key\n',
  );
  assert.equal(formatError('bridgectl: configuration error\n/x.yaml:1: a: b', 'journal'), '<3>bridgectl: configuration error\n<3>/x.yaml:1: a: b\n');
  assert.equal(formatError('plain', 'text'), 'plain\n');
});

test('text format for a terminal, JSON untouched for programs', () => {
  assert.equal(formatLine(line(30, 'tor started', { torPid: 7, name: 'a b' }), 'text'), '03:04:05.006 INFO  tor started torPid=7 name="a b"\n');
  const j = line(30, 'x');
  assert.equal(formatLine(j, 'json'), `${j}\n`);
});

test('the format follows JOURNAL_STREAM, a terminal, or BRIDGECTL_LOG_FORMAT', () => {
  assert.equal(chooseFormat({ JOURNAL_STREAM: '8:1234' }, '8:1234', false), 'journal');
  assert.equal(chooseFormat({ JOURNAL_STREAM: '8:1234' }, '8:999', false), 'json', 'stdout redirected away from the journal');
  assert.equal(chooseFormat({}, '8:1', true), 'text');
  assert.equal(chooseFormat({}, '8:1', false), 'json');
  assert.equal(chooseFormat({ BRIDGECTL_LOG_FORMAT: 'journal' }, null, true), 'journal');
});

test("children's lines: tor's [warn] is a warning, [notice] information, a Go program's line information", () => {
  assert.equal(childLineLevel('Jan 02 03:04:05.000 [warn] Failed to open GEOIP file'), 'warn');
  assert.equal(childLineLevel('Jan 02 03:04:05.000 [notice] Bootstrapped 100%'), 'info');
  assert.equal(childLineLevel('Jan 02 03:04:05.000 [err] Reading config failed'), 'error');
  assert.equal(childLineLevel('2026/01/02 03:04:05 [WARN]: obfs4(127.0.0.1:1): handshake failed'), 'warn');
  assert.equal(childLineLevel('2026/01/02 03:04:05 [NOTICE]: obfs4proxy - launched'), 'info');
  assert.equal(childLineLevel('2026/01/02 03:04:05 proxy starting'), 'info');
  assert.equal(childLineLevel('panic: runtime error: index out of range'), 'error');
});

test('a config error printed under the journal has priority 3 on each line', async () => {
  const r = await execa(process.execPath, [CLI, 'status', '--config', '/nonexistent/b.yaml'], {
    reject: false,
    env: { BRIDGECTL_LOG_FORMAT: 'journal' },
  });
  assert.equal(r.exitCode, 78);
  assert.equal(r.stderr, '<3>bridgectl: configuration error\n<3>/nonexistent/b.yaml:0: config file not found');
});
