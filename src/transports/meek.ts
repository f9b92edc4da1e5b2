// meek-server: clients reach it through a CDN (domain fronting): the bridge line has a placeholder
// address, the server's url= and the front=. Needs --disable-tls, --acme-hostnames, or --cert and
// --key; prints `SMETHOD meek ADDR` with no ARGS; a taken port gives SMETHOD-ERROR.
import type { TransportKind } from './kind.js';
import { cleanStop, hasFlag, line, need } from './common.js';
import { readGoStderr } from './stderr.js';

export const MEEK_PLACEHOLDER = '192.0.2.2:80';

export const meek: TransportKind = {
  kind: 'meek',
  distributable: false,
  state: ['meek-certificate-cache'],
  check(e) {
    const c = e.command;
    const ok = hasFlag(c, 'disable-tls') || hasFlag(c, 'acme-hostnames') || (hasFlag(c, 'cert') && hasFlag(c, 'key'));
    return ok ? [] : [{ key: 'command', message: 'meek-server needs --disable-tls (behind a web server or CDN), --acme-hostnames HOST, or --cert FILE and --key FILE' }];
  },
  bridgeLine(i) {
    const c = i.entry.client ?? {};
    return line(c.transport ?? 'meek_lite', c.placeholder ?? MEEK_PLACEHOLDER, i, [
      ['url', need(i.entry, c.url, 'client.url', "the server's URL as the CDN serves it (url=)")],
      ['front', need(i.entry, c.front, 'client.front', 'the domain to front through (front=)')],
    ]);
  },
  readStderr: readGoStderr,
  normalStopExit: (_e, code, signal) => cleanStop(code, signal),
  extraListens: (e) => (hasFlag(e.command, 'acme-hostnames') ? [e.listen.replace(/:\d+$/, ':80')] : []),
};
