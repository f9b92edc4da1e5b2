// A fake webtunnel server: the behaviours in issue 13, exactly.
import { goLog, serverSetup, options, listen, untilStopped, say } from './common.js';

const env = serverSetup('webtunnel');
const url = options('webtunnel').url;
if (!url) {
  say('SMETHOD-ERROR webtunnel missing url option');
  say('SMETHOD-ERROR webtunnel no valid listener');
  process.exit(0);
}
const { host, port } = env.bindAddr;
listen(host, port).then(
  () => {
    // It advertises a synthetic address: clients find it by url=, behind a TLS web server.
    say(`SMETHOD webtunnel [2001:db8:9443:367a:3276:1e74:91c3:7a5a]:443 ARGS:url=${url},ver=0.0.1`);
    say('SMETHODS DONE');
    untilStopped(env, () => process.exit(0));
  },
  (e: Error) => {
    goLog(`listen error: ${e.message}`);
    process.exit(1);
  },
);
