// webtunnel: behind a TLS web server that forwards one secret path. Needs the option url=...
// (without it: two SMETHOD-ERRORs and exit 0); a taken port: exit 1. Its SMETHOD advertises a
// synthetic [2001:db8:...]:443 with ARGS:url=..,ver=.., which is what clients put in their line.
import type { TransportKind } from './kind.js';
import { cleanStop, line } from './common.js';
import { readGoStderr } from './stderr.js';

export const webtunnel: TransportKind = {
  kind: 'webtunnel',
  distributable: true,
  state: [],
  check(e) {
    const url = e.options.url;
    if (url === undefined) return [{ key: 'options.url', message: 'webtunnel needs url: the https:// address (with the secret path) its web server forwards' }];
    try {
      const u = new URL(url);
      if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error();
    } catch {
      return [{ key: 'options.url', message: `${JSON.stringify(url)} is not an https:// URL` }];
    }
    return [];
  },
  bridgeLine(i) {
    const { url, ver, ...rest } = i.smethod.args;
    return line(i.entry.name, i.entry.publicAddress ?? i.smethod.address, i, [['url', url ?? i.entry.options.url], ['ver', ver], ...Object.entries(rest)]);
  },
  readStderr: readGoStderr,
  normalStopExit: (_e, code, signal) => cleanStop(code, signal),
  extraListens: () => [],
};
