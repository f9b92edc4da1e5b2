// snowflake-server: clients never dial the bridge; they reach it through the broker and volunteer
// proxies (WebSocket), so the bridge line carries a placeholder address and the broker's URL, and
// the broker needs the bridge in its bridge list. Facts (2.5.1): needs --disable-tls or
// --acme-hostnames (else exit 1); ACME also listens on port 80 of the bind address, keeps its
// certificates in <state>/snowflake-certificate-cache and exits 1 even on a clean shutdown; it
// prints SMETHOD and SMETHODS DONE even when its port is taken (only stderr says so).
import { isIP } from 'node:net';
import type { Problem, TransportKind } from './kind.js';
import { cleanStop, flagValue, hasFlag, line, need } from './common.js';
import { readGoStderr } from './stderr.js';

export const SNOWFLAKE_PLACEHOLDER = '192.0.2.3:80';

const acme = (command: string[]): boolean => hasFlag(command, 'acme-hostnames');

export const snowflake: TransportKind = {
  kind: 'snowflake',
  distributable: false,
  state: ['snowflake-certificate-cache'],
  check(e) {
    const p: Problem[] = [];
    if (!hasFlag(e.command, 'disable-tls') && !acme(e.command)) {
      p.push({ key: 'command', message: 'snowflake-server needs --disable-tls (behind a TLS web server) or --acme-hostnames HOST (its own certificates); with neither it exits 1' });
    }
    const log = flagValue(e.command, 'log');
    if (log !== undefined) {
      p.push({ key: 'command', message: `drop "-log ${log}": under the shipped unit (ProtectSystem=strict) only the state directory is writable; without -log it logs to stderr, which bridgectl reads and logs` });
    }
    const n = e.options['num-turbotunnel'];
    if (n !== undefined && !(/^\d+$/.test(n) && Number(n) >= 1)) p.push({ key: 'options.num-turbotunnel', message: 'must be a whole number ≥ 1' });
    const src = e.options['orport-srcaddr'];
    if (src !== undefined && !src.split(',').every((c) => { const [a, len] = c.split('/'); return !!isIP(a ?? '') && (len === undefined || /^\d{1,3}$/.test(len)); })) {
      p.push({ key: 'options.orport-srcaddr', message: 'must be an address or CIDR range (or a comma-separated list), e.g. 127.0.3.0/24' });
    }
    return p;
  },
  bridgeLine(i) {
    const c = i.entry.client ?? {};
    return line(i.entry.name, c.placeholder ?? SNOWFLAKE_PLACEHOLDER, i, [
      ['fingerprint', i.fingerprint],
      ['url', need(i.entry, c.url, 'client.url', "the broker's URL (url=)")],
      ['front', c.front],
      ['fronts', c.fronts?.join(',')],
      ['ice', c.ice?.join(',')],
      ['utls-imitate', c.utlsImitate],
    ]);
  },
  brokerEntry(i) {
    const host = i.smethod.args.hostname;
    const ws = i.entry.client?.webSocketAddress ?? (host ? `wss://${host}/` : undefined);
    return JSON.stringify({
      displayName: i.nickname,
      webSocketAddress: need(i.entry, ws, 'client.webSocketAddress', 'the wss:// address proxies reach the server at (ACME mode reports it itself)'),
      fingerprint: i.fingerprint,
    });
  },
  readStderr(l) {
    const r = readGoStderr(l);
    // snowflake-server's listener runs in a goroutine: a taken port shows only here.
    if (/error in ListenAndServe/.test(r.message)) return { ...r, level: 'error', setupFailed: r.message };
    return r;
  },
  normalStopExit: (e, code, signal) => cleanStop(code, signal) || (acme(e.command) && code === 1),
  extraListens(e) {
    if (!acme(e.command)) return [];
    return [e.listen.replace(/:\d+$/, ':80')];
  },
};
