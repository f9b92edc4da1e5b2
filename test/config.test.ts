import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseConfigText, configPath, instanceNames, BALANCER_DEFAULTS, loadConfig, saveInstanceCount, effectiveInstances } from '../src/config/index.js';
import { cli, configProblems, tmp } from './helpers.js';

const GOOD = `nickname: mybridge
instances: 4
dataDir: /var/lib/bridgectl
contactInfo: ops@example.org
torrc: |
  MaxMemInQueues 2 GB
`;

test('a good config parses with defaults', () => {
  const c = parseConfigText(GOOD, 'x.yaml');
  assert.equal(c.instances, 4);
  assert.equal(c.balancer.listen, '127.0.0.1:10000');
  assert.equal(c.balancer.sourceRange, '127.0.2.0/24');
  assert.equal(c.torrc, 'MaxMemInQueues 2 GB\n');
  assert.deepEqual(instanceNames(c), ['mybridge1', 'mybridge2', 'mybridge3', 'mybridge4']);
});

test('balancer.twinTimeoutMs: default from the one defaults module; backendTimeoutMs is its old name', () => {
  assert.equal(parseConfigText(GOOD, 'x.yaml').balancer.twinTimeoutMs, BALANCER_DEFAULTS.twinTimeoutMs);
  assert.equal(parseConfigText(GOOD, 'x.yaml').balancer.maxSessions, 250_000);
  assert.equal(parseConfigText(`${GOOD}balancer:\n  twinTimeoutMs: 700\n`, 'x.yaml').balancer.twinTimeoutMs, 700);
  const old = parseConfigText(`${GOOD}balancer:\n  backendTimeoutMs: 800\n`, 'x.yaml').balancer;
  assert.equal(old.twinTimeoutMs, 800);
  assert.equal('backendTimeoutMs' in old, false, 'one name once parsed');
  const both = configProblems(`${GOOD}balancer:\n  twinTimeoutMs: 700\n  backendTimeoutMs: 800\n`);
  assert.ok(both.some((x) => x.key === 'balancer.backendTimeoutMs' && x.line === 9 && /old name of twinTimeoutMs/.test(x.message)), JSON.stringify(both));
});

test('a typo in a key names file, line, key and suggests the right one', () => {
  const p = configProblems(GOOD.replace('instances: 4', 'instnces: 4'));
  const typo = p.find((x) => x.key === 'instnces');
  assert.ok(typo, JSON.stringify(p));
  assert.equal(typo.file, '/etc/bridgectl.yaml');
  assert.equal(typo.line, 2);
  assert.match(typo.message, /unknown key.*"instances"/);
  // and the real key is now missing
  assert.ok(p.some((x) => x.key === 'instances' && /missing/.test(x.message)));
});

test('a nested typo names the nested key and its line', () => {
  const p = configProblems(GOOD + 'balancer:\n  listen: 127.0.0.1:10000\n  sourceRang: 127.0.2.0/24\n');
  assert.deepEqual(
    p.map((x) => [x.key, x.line]),
    [['balancer.sourceRang', 9]],
  );
});

test('a wrong type names the line of the value', () => {
  const p = configProblems(GOOD.replace('instances: 4', 'instances: four'));
  assert.equal(p.length, 1);
  assert.equal(p[0]!.key, 'instances');
  assert.equal(p[0]!.line, 2);
  assert.match(p[0]!.message, /number/);
});

test('bad YAML names the line', () => {
  const p = configProblems('nickname: a\ninstances: [1, 2\ndataDir: /x\n');
  assert.ok(p.length >= 1);
  assert.match(p[0]!.message, /invalid YAML/);
  assert.ok(p[0]!.line >= 2 && p[0]!.line <= 4, `line ${p[0]!.line}`);
});

test('nicknames that would exceed 19 characters are refused', () => {
  const p = configProblems(GOOD.replace('nickname: mybridge', 'nickname: averyveryverylongnick'));
  assert.equal(p[0]!.key, 'nickname');
  assert.match(p[0]!.message, /19/);
});

test('config path: flag, then $BRIDGECTL_CONFIG, then ./bridgectl.yaml, then /etc/bridgectl/bridgectl.yaml', () => {
  assert.equal(configPath('/a.yaml', { BRIDGECTL_CONFIG: '/b.yaml' }), '/a.yaml');
  assert.equal(configPath(undefined, { BRIDGECTL_CONFIG: '/b.yaml' }), '/b.yaml');
  assert.equal(configPath(undefined, {}, () => true), join(process.cwd(), 'bridgectl.yaml'));
  assert.equal(configPath(undefined, {}, () => false), '/etc/bridgectl/bridgectl.yaml');
});

test('the CLI exits non-zero with file:line and the key for typo, wrong type and bad YAML', async () => {
  const d = await tmp('cfg');
  const cases: Array<[string, RegExp]> = [
    [GOOD.replace('dataDir:', 'datadir:'), /bad\.yaml:3: datadir: unknown key \(did you mean "dataDir"\?\)/],
    [GOOD.replace('instances: 4', 'instances: "4"'), /bad\.yaml:2: instances: Expected number/],
    [GOOD.replace('contactInfo: ops@example.org', 'contactInfo: [ops'), /bad\.yaml:\d+: .*invalid YAML/],
  ];
  for (const [text, re] of cases) {
    const f = join(d, 'bad.yaml');
    await writeFile(f, text);
    const r = await cli(['init', '--config', f]);
    assert.notEqual(r.exitCode, 0);
    assert.match(r.all ?? '', re);
  }
  const viaEnv = await cli(['keys', 'verify'], { env: { BRIDGECTL_CONFIG: join(d, 'bad.yaml') } });
  assert.match(viaEnv.all ?? '', /bad\.yaml:\d+/);
});

test('a run-time instance count in <dataDir>/instance-count.json overrides `instances` until the config changes it', async () => {
  const d = await tmp('count');
  const file = join(d, 'b.yaml');
  await writeFile(file, `nickname: cnt\ninstances: 2\ndataDir: ${d}/data\n`);
  await mkdir(join(d, 'data'));
  assert.equal(loadConfig(file).config.instances, 2);
  assert.equal(loadConfig(file).config.instancesOverride, undefined);
  await saveInstanceCount(join(d, 'data'), 3, 2);
  const c = loadConfig(file).config;
  assert.equal(c.instances, 3);
  assert.deepEqual(c.instancesOverride, { file: join(d, 'data', 'instance-count.json'), configInstances: 2 });
  await writeFile(file, `nickname: cnt\ninstances: 5\ndataDir: ${d}/data\n`);
  assert.equal(loadConfig(file).config.instances, 5, 'the operator edited instances: the config wins');
  assert.equal(effectiveInstances(2, null), 2);
});
