// A fake snowflake-server (2.5.1) for what CI cannot run: the behaviours in issue 13, exactly.
import { mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { goLog, flag, flagValue, serverSetup, options, listen, untilStopped, say } from './common.js';

const acmeHosts = flagValue('acme-hostnames');
const disableTls = flag('disable-tls');
const logFile = flagValue('log');
const unsafe = flag('unsafe-logging');
if (logFile) {
  try {
    openSync(logFile, 'a');
  } catch (e) {
    goLog(`can't open log file: ${(e as Error).message}`);
    process.exit(1);
  }
}
if (!disableTls && !acmeHosts) {
  goLog('the --acme-hostnames option is required');
  process.exit(1);
}
const env = serverSetup('snowflake');
const scrub = (a: string): string => (unsafe ? a : '[scrubbed]');
const opts = options('snowflake');
const n = opts['num-turbotunnel'] === undefined ? 1 : Number(opts['num-turbotunnel']);
const { host, port } = env.bindAddr;
const servers: Array<{ close(): void }> = [];
if (!(n >= 1)) {
  say(`SMETHOD-ERROR snowflake num-turbotunnel must be at least 1`);
  say('SMETHODS DONE');
} else if (port === 0) {
  say('SMETHOD-ERROR snowflake cannot listen on port 0');
  say('SMETHODS DONE');
} else {
  // ACME: the real server opens port 80 of the bind address first (HTTP-01); when it cannot, it
  // logs it, reports SMETHOD-ERROR for the method and announces nothing else.
  const http01 = acmeHosts
    ? listen(host, 80).then(
        (s) => (servers.push(s), true),
        (e: Error) => {
          goLog(`error opening HTTP-01 ACME listener: listen tcp ${host}:80: ${e.message}`);
          say(`SMETHOD-ERROR snowflake HTTP-01 ACME listener: listen tcp ${host}:80: ${e.message}`);
          say('SMETHODS DONE');
          return false;
        },
      )
    : Promise.resolve(true);
  if (acmeHosts) mkdirSync(join(process.env.TOR_PT_STATE_LOCATION ?? '.', 'snowflake-certificate-cache'), { recursive: true, mode: 0o700 });
  void http01.then((ok) => ok && announce());
}
function announce(): void {
  // The real server announces its method before its listener (a goroutine) has bound the port.
  say(`SMETHOD snowflake ${host}:${port} ARGS:${acmeHosts ? `hostname=${acmeHosts.split(',')[0]},tls=yes` : 'tls=no'}`);
  say('SMETHODS DONE');
  listen(host, port, (c) => {
    // It reads the cookie file again for every connection.
    try {
      readFileSync(env.authCookieFile);
    } catch (e) {
      goLog(`error reading the ExtORPort cookie: ${(e as Error).message}`);
    }
    goLog(`new WebSocket connection from ${scrub(`${c.remoteAddress}:${c.remotePort}`)}`);
  }).then(
    (s) => servers.push(s),
    (e: NodeJS.ErrnoException) => goLog(`error in ListenAndServe: listen tcp ${host}:${port}: bind: ${e.code === 'EADDRINUSE' ? 'address already in use' : e.message}`),
  );
}
untilStopped(env, () => {
  for (const s of servers) s.close();
  // In ACME mode the real server exits 1 even on a clean shutdown.
  process.exit(acmeHosts ? 1 : 0);
});
