// A private Tor network on loopback: three directory authorities (which double as guard, middle
// and exit) that publish a consensus within seconds, plus an HTTP server to fetch through.
import { mkdir, readFile, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { execa } from 'execa';
import type { Logger } from 'pino';
import { spawnChild, torArgs, listFingerprint, renderTorrc, parseNsEntry, TOR_BIN, type Child } from '../tor/index.js';
import { assertIsolated } from './isolation.js';
import { freePort } from './ports.js';

export interface Authority {
  nickname: string;
  orPort: number;
  dirPort: number;
  fingerprint: string;
  v3ident: string;
  dataDir: string;
  child?: Child;
}

export interface LabHttp {
  port: number;
  /** URL of a file of random bytes. */
  url: string;
  file: Buffer;
  sha256: string;
}

export interface Lab {
  dir: string;
  authorities: Authority[];
  /** torrc lines every other node (bridge, relay, client) of the lab needs. */
  torrcLines: string[];
  http: LabHttp;
  stop(): Promise<void>;
}

export interface LabOptions {
  dir: string;
  logger: Logger;
  /** Size of the test file served over HTTP. */
  fileSize?: number;
  /** How long to wait for the first consensus. */
  consensusTimeoutMs?: number;
}

/** Options that make a testing network publish a consensus in about ten seconds. */
const FAST_VOTING = [
  'V3AuthVotingInterval 10',
  'V3AuthVoteDelay 2',
  'V3AuthDistDelay 2',
  'TestingV3AuthInitialVotingInterval 10',
  'TestingV3AuthInitialVoteDelay 2',
  'TestingV3AuthInitialDistDelay 2',
  'TestingV3AuthVotingStartOffset 0',
];

/** Lines for every node in the lab, authorities included. */
function commonLines(auths: Authority[]): string[] {
  return [
    'TestingTorNetwork 1',
    ...auths.map(
      (a) => `DirAuthority ${a.nickname} orport=${a.orPort} no-v2 v3ident=${a.v3ident} 127.0.0.1:${a.dirPort} ${a.fingerprint}`,
    ),
    'PathsNeededToBuildCircuits 0.25',
    'SafeLogging 0',
    'ShutdownWaitLength 0',
  ];
}

async function makeAuthorityKeys(a: Authority): Promise<void> {
  const keys = join(a.dataDir, 'keys');
  await mkdir(keys, { recursive: true, mode: 0o700 });
  const r = await execa(
    'tor-gencert',
    [
      '--create-identity-key',
      '--passphrase-fd', '0',
      '-m', '12',
      '-a', `127.0.0.1:${a.dirPort}`,
      '-i', join(keys, 'authority_identity_key'),
      '-s', join(keys, 'authority_signing_key'),
      '-c', join(keys, 'authority_certificate'),
    ],
    { input: '\n', reject: false },
  );
  if (r.exitCode !== 0) throw new Error(`tor-gencert failed: ${r.stderr || r.stdout}`);
  const cert = await readFile(join(keys, 'authority_certificate'), 'utf8');
  const m = /^fingerprint ([0-9A-F]{40})$/m.exec(cert);
  if (!m?.[1]) throw new Error('tor-gencert wrote no fingerprint line');
  a.v3ident = m[1];
  a.fingerprint = await listFingerprint(a.dataDir, a.nickname);
}

/**
 * Whether this authority serves a consensus in which every node of the lab can be on a circuit:
 * all of them listed, each Running, Valid, Guard and Exit. The first consensus can lack a node
 * whose descriptor reached the authorities after the vote; a tor that fetched that one has too few
 * relays for a three-hop circuit and waits at "enough directory info" until a later consensus.
 */
async function consensusComplete(dirPort: number, nicknames: string[]): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get(
      { host: '127.0.0.1', port: dirPort, path: '/tor/status-vote/current/consensus-microdesc', timeout: 2000 },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          return resolve(false);
        }
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve(consensusLists(text, nicknames)));
        res.on('error', () => resolve(false));
      },
    );
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
  });
}

/** Every nickname has an entry (its r line to the next) whose flags a circuit needs. */
function consensusLists(text: string, nicknames: string[]): boolean {
  const entries = text.split(/\n(?=r )/).flatMap((chunk) => parseNsEntry(chunk) ?? []);
  const usable = (n: string): boolean =>
    entries.some((e) => e.nickname === n && ['Running', 'Valid', 'Guard', 'Exit'].every((f) => e.flags.includes(f)));
  return nicknames.every(usable);
}

async function startHttp(file: Buffer): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((req, res) => {
    if (req.url === '/file') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': file.length });
      res.end(file);
    } else if (req.url?.startsWith('/bytes/')) {
      const n = Math.min(Number(req.url.slice(7)) || 0, 1 << 30);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
      const chunk = Buffer.alloc(Math.min(n, 1 << 16), 0x61);
      let left = n;
      const pump = (): void => {
        while (left > 0) {
          const c = left >= chunk.length ? chunk : chunk.subarray(0, left);
          left -= c.length;
          if (!res.write(c)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    } else {
      res.writeHead(404).end('not found\n');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  if (!addr || typeof addr === 'string') throw new Error('http server has no port');
  return { server, port: addr.port };
}

export async function startLab(opts: LabOptions): Promise<Lab> {
  assertIsolated('the lab network');
  const { dir, logger } = opts;
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });

  const auths: Authority[] = [];
  for (let i = 1; i <= 3; i++) {
    auths.push({
      nickname: `labauth${i}`,
      orPort: await freePort(),
      dirPort: await freePort(),
      fingerprint: '',
      v3ident: '',
      dataDir: join(dir, `auth${i}`),
    });
  }
  await Promise.all(auths.map(makeAuthorityKeys));
  const common = commonLines(auths);

  const stopAll = async (): Promise<void> => {
    await Promise.all(auths.map((a) => a.child?.stop(5_000)));
  };

  try {
    for (const a of auths) {
      const torrc = join(a.dataDir, 'torrc');
      await writeFile(
        torrc,
        renderTorrc([
          ...common,
          ...FAST_VOTING,
          `DataDirectory ${a.dataDir}`,
          `Nickname ${a.nickname}`,
          'Address 127.0.0.1',
          `ORPort 127.0.0.1:${a.orPort}`,
          `DirPort 127.0.0.1:${a.dirPort}`,
          'SocksPort 0',
          'AssumeReachable 1',
          'AuthoritativeDirectory 1',
          'V3AuthoritativeDirectory 1',
          'ContactInfo lab@localhost',
          'ExitRelay 1',
          'ExitPolicy accept 127.0.0.0/8:*',
          'ExitPolicyRejectPrivate 0',
          'TestingDirAuthVoteExit *',
          'TestingDirAuthVoteGuard *',
          'TestingDirAuthVoteHSDir *',
          'TestingMinExitFlagThreshold 0',
          `Log notice file ${join(a.dataDir, 'notice.log')}`,
          'Log warn stdout',
        ]),
      );
      const log = logger.child({ lab: a.nickname });
      a.child = spawnChild(TOR_BIN, torArgs(torrc), { onLine: (line) => log.debug({ tor: line }) });
      void a.child.exited.then((e) => log.debug({ exit: e }, 'authority exited'));
    }

    const deadline = Date.now() + (opts.consensusTimeoutMs ?? 90_000);
    for (;;) {
      const ok = await Promise.all(auths.map((a) => consensusComplete(a.dirPort, auths.map((x) => x.nickname))));
      if (ok.every(Boolean)) break;
      if (Date.now() > deadline) throw new Error('the lab network published no consensus in time');
      await new Promise((r) => setTimeout(r, 500));
    }
  } catch (e) {
    await stopAll();
    throw e;
  }

  const file = randomBytes(opts.fileSize ?? 1 << 20);
  const h = await startHttp(file);
  logger.info({ authorities: auths.map((a) => a.nickname), httpPort: h.port }, 'lab network is up');

  return {
    dir,
    authorities: auths,
    torrcLines: common,
    http: {
      port: h.port,
      url: `http://127.0.0.1:${h.port}/file`,
      file,
      sha256: createHash('sha256').update(file).digest('hex'),
    },
    stop: async () => {
      h.server.closeAllConnections();
      await new Promise((r) => h.server.close(r));
      await stopAll();
    },
  };
}
