// obfs4: obfs4proxy (Debian's package) and lyrebird (the Tor Project's maintained fork, a drop-in).
// SMETHOD obfs4 ADDR ARGS:cert=..,iat-mode=..; the cert lives in the state directory.
import type { TransportKind } from './kind.js';
import { cleanStop, dialAddress, line } from './common.js';
import { readGoStderr } from './stderr.js';

export const obfs4: TransportKind = {
  kind: 'obfs4',
  distributable: true,
  // The identity and node id behind cert=: lose them and every client's bridge line is wrong.
  state: ['obfs4_state.json', 'obfs4_bridgeline.txt'],
  check(e) {
    const iat = e.options['iat-mode'];
    return iat !== undefined && !['0', '1', '2'].includes(iat) ? [{ key: 'options.iat-mode', message: 'must be "0", "1" or "2"' }] : [];
  },
  bridgeLine(i) {
    const { cert, 'iat-mode': iat, ...rest } = i.smethod.args;
    if (!cert) throw new Error(`transport ${i.entry.name}: its SMETHOD has no cert= (is it an obfs4 server?)`);
    return line(i.entry.name, dialAddress(i.entry, i.smethod.address), i, [['cert', cert], ['iat-mode', iat ?? '0'], ...Object.entries(rest)]);
  },
  readStderr: readGoStderr,
  normalStopExit: (_e, code, signal) => cleanStop(code, signal),
  extraListens: () => [],
};
