// Runs inside the systemd-nspawn container of test/package-systemd.test.ts (loopback only), with
// the repo's build bind-mounted read-only at /src:
//   node container-lab.js lab DIR OUT.json              the private lab network; writes its torrc lines, URL and sha256; runs until SIGTERM
//   node container-lab.js client DIR LAB.json BRIDGELINE  an obfs4 lab client through the bridge; prints "socks PORT", runs until SIGTERM
//   node container-lab.js fetch PORT URL                  one download through that client's SOCKS port; prints its sha256
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import pino from 'pino';
import { startLab, startClient, fetchViaSocks } from '../src/lab/index.js';

const logger = pino({ level: 'warn' }, pino.destination({ fd: 2, sync: true }));
const [mode, a, b, c] = process.argv.slice(2);

const untilTerm = (stop: () => Promise<void>): void => {
  process.on('SIGTERM', () => void stop().finally(() => process.exit(0)));
};

if (mode === 'lab') {
  const lab = await startLab({ dir: a!, logger });
  await writeFile(b!, JSON.stringify({ torrcLines: lab.torrcLines, url: lab.http.url, sha256: lab.http.sha256 }));
  console.log('lab up');
  untilTerm(() => lab.stop());
} else if (mode === 'client') {
  const lab = JSON.parse(await readFile(b!, 'utf8')) as { torrcLines: string[] };
  const cl = await startClient({
    name: 'pkgclient',
    dir: a!,
    labTorrc: lab.torrcLines,
    bridges: [c!],
    transportPlugins: ['obfs4 exec /usr/bin/obfs4proxy'],
    logger,
    bootstrapTimeoutMs: 120_000,
  });
  console.log(`socks ${cl.socksPort}`);
  untilTerm(() => cl.stop());
} else if (mode === 'fetch') {
  const body = await fetchViaSocks(Number(a), b!, 60_000);
  console.log(createHash('sha256').update(body).digest('hex'));
} else {
  console.error('usage: container-lab.js lab DIR OUT | client DIR LAB.json BRIDGELINE | fetch PORT URL');
  process.exit(2);
}
