// Any other managed server transport: its SMETHOD's address (or publicAddress) and ARGS as they are.
import type { TransportKind } from './kind.js';
import { cleanStop, dialAddress, line } from './common.js';
import { readGoStderr } from './stderr.js';

export const generic: TransportKind = {
  kind: 'generic',
  distributable: true,
  state: [],
  check: () => [],
  bridgeLine: (i) => line(i.entry.name, dialAddress(i.entry, i.smethod.address), i, Object.entries(i.smethod.args)),
  readStderr: readGoStderr,
  normalStopExit: (_e, code, signal) => cleanStop(code, signal),
  extraListens: () => [],
};
