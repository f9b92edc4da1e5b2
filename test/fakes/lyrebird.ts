// A fake lyrebird (0.1), a drop-in for obfs4proxy: keeps its cert in obfs4_state.json and
// obfs4_bridgeline.txt in the state directory.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { serverSetup, options, listen, untilStopped, say } from './common.js';

process.stderr.write(`[NOTICE]: lyrebird - launched\n`);
const env = serverSetup('obfs4');
const dir = process.env.TOR_PT_STATE_LOCATION ?? '.';
const state = join(dir, 'obfs4_state.json');
if (!existsSync(state)) {
  const cert = randomBytes(52).toString('base64').replace(/=+$/, '');
  writeFileSync(state, JSON.stringify({ cert }), { mode: 0o600 });
  writeFileSync(join(dir, 'obfs4_bridgeline.txt'), `Bridge obfs4 <IP ADDRESS>:<PORT> <FINGERPRINT> cert=${cert} iat-mode=0\n`, { mode: 0o600 });
}
const { cert } = JSON.parse(readFileSync(state, 'utf8')) as { cert: string };
const iat = options('obfs4')['iat-mode'] ?? '0';
const { host, port } = env.bindAddr;
listen(host, port).then(
  (s) => {
    say(`SMETHOD obfs4 ${host}:${(s.address() as { port: number }).port} ARGS:cert=${cert},iat-mode=${iat}`);
    say('SMETHODS DONE');
    untilStopped(env, () => process.exit(0));
  },
  (e: Error) => {
    say(`SMETHOD-ERROR obfs4 ${e.message}`);
    say('SMETHODS DONE');
    process.stderr.write(`[ERROR]: obfs4 - failed to listen: ${e.message}\n`);
  },
);
