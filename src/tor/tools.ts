import { execa } from 'execa';
import { torArgs } from './process.js';

export const TOR_BIN = process.env.BRIDGECTL_TOR ?? 'tor';

/**
 * Makes tor create (or load) the relay keys in `dataDir` and prints the fingerprint. It touches no
 * network: `--list-fingerprint` exits before tor opens any connection, and we add DisableNetwork 1.
 */
export async function listFingerprint(dataDir: string, nickname: string, torBin = TOR_BIN, extraArgs: string[] = []): Promise<string> {
  const r = await execa(
    torBin,
    [
      ...torArgs('/dev/null', ['--ignore-missing-torrc']),
      '--list-fingerprint',
      '--DataDirectory', dataDir,
      '--ORPort', '127.0.0.1:auto',
      '--Nickname', nickname,
      '--DisableNetwork', '1',
      '--SocksPort', '0',
      '--Log', 'err stderr',
      ...extraArgs,
    ],
    { reject: false },
  );
  if (r.exitCode !== 0) {
    throw new Error(`tor --list-fingerprint failed (exit ${r.exitCode}): ${(r.stderr || r.stdout).trim()}`);
  }
  const line = r.stdout.trim().split('\n').pop() ?? '';
  const fp = line.split(' ').slice(1).join('');
  if (!/^[0-9A-F]{40}$/.test(fp)) throw new Error(`unexpected output from tor --list-fingerprint: ${line}`);
  return fp;
}

export async function torVersion(torBin = TOR_BIN): Promise<string> {
  const r = await execa(torBin, ['--version'], { reject: false });
  const m = /Tor version ([0-9][^\s.]*(?:\.[0-9A-Za-z-]+)*)/.exec(r.stdout);
  if (!m?.[1]) throw new Error(`cannot tell tor's version from: ${r.stdout || r.stderr || r.message}`);
  return m[1];
}

/** Runs `tor --verify-config` on a torrc; resolves to null when valid, else tor's complaint. */
export async function verifyConfig(torrcPath: string, torBin = TOR_BIN): Promise<string | null> {
  const r = await execa(torBin, [...torArgs(torrcPath), '--verify-config'], { reject: false });
  if (r.exitCode === 0) return null;
  const lines = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => /\[(warn|err)\]/.test(l));
  return (lines.length ? lines : [r.stdout || r.stderr || r.shortMessage]).join('\n').trim();
}
