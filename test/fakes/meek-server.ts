// A fake meek-server (0.38): the behaviours in issue 13, exactly.
import { goLog, flag, serverSetup, listen, untilStopped, say } from './common.js';

if (!flag('disable-tls') && !flag('acme-hostnames') && !(flag('cert') && flag('key'))) {
  goLog('you must use either --acme-hostnames, or --cert and --key, or --disable-tls');
  process.exit(1);
}
const env = serverSetup('meek');
const { host, port } = env.bindAddr;
listen(host, port).then(
  (s) => {
    say(`SMETHOD meek ${host}:${(s.address() as { port: number }).port}`);
    say('SMETHODS DONE');
    untilStopped(env, () => process.exit(0));
  },
  (e: Error) => {
    say(`SMETHOD-ERROR meek ${e.message}`);
    say('SMETHODS DONE');
    untilStopped(env, () => process.exit(0));
  },
);
