import { instanceLayout, loadConfig } from '../config/index.js';
import { renderHaproxy, renderNftables, renderSystemdUnit } from '../deploy/index.js';
import { renderInstanceTorrc } from '../supervisor/index.js';
import { renderModulesLoadConf, renderSysctlConf } from '../host-doctor/index.js';
import { parse, UsageError } from './args.js';
import { familyOf, relayLayouts, renderRelayTorrc } from '../relay/index.js';

export const RENDER_USAGE = `usage: bridgectl render systemd [--bin PATH] [--unit-config FILE] [--user NAME]
       bridgectl render sysctl
       bridgectl render modules
       bridgectl render haproxy [--config FILE] [--bin PATH]
       bridgectl render torrc N [--config FILE]
       bridgectl render nftables [--config FILE]
Prints a deployment file on stdout. With no options, systemd, sysctl and modules print exactly
the files under deploy/.`;

/** `bridgectl render systemd|sysctl|modules|haproxy|torrc N`. */
export async function renderCommand(argv: string[]): Promise<number> {
  const [what, ...rest] = argv;
  const out = (text: string): number => {
    process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
    return 0;
  };
  switch (what) {
    case 'systemd': {
      const { values } = parse(rest, { bin: { type: 'string' }, 'unit-config': { type: 'string' }, user: { type: 'string' } });
      return out(renderSystemdUnit({ bin: values.bin, config: values['unit-config'], user: values.user }));
    }
    case 'sysctl':
      parse(rest, {});
      return out(renderSysctlConf());
    case 'modules':
      parse(rest, {});
      return out(renderModulesLoadConf());
    case 'haproxy': {
      const { values } = parse(rest, { config: { type: 'string' }, bin: { type: 'string' } });
      const { config, file } = loadConfig(values.config);
      return out(renderHaproxy(config, { configFile: file, bin: values.bin }));
    }
    case 'torrc': {
      const { values, positionals } = parse(rest, { config: { type: 'string' } }, true);
      if (positionals.length !== 1 || !/^\d+$/.test(positionals[0]!)) throw new UsageError(`render torrc takes one instance number\n${RENDER_USAGE}`);
      const { config } = loadConfig(values.config);
      const n = Number(positionals[0]);
      if (n < 1 || n > config.instances) throw new UsageError(`instance ${n} does not exist: the config has instances 1..${config.instances}`);
      if (config.mode === 'relay') {
        // A relay's torrc names the family: its id and every member's fingerprint, from the keys on disk.
        const f = await familyOf(config, relayLayouts(config));
        return out(renderRelayTorrc(config, instanceLayout(config, n), { id: f.key.id, members: f.members }));
      }
      return out(renderInstanceTorrc(config, instanceLayout(config, n)));
    }
    case 'nftables': {
      const { values } = parse(rest, { config: { type: 'string' } });
      return out(renderNftables(loadConfig(values.config).config));
    }
    case '-h':
    case '--help':
      console.log(RENDER_USAGE);
      return 0;
    default:
      throw new UsageError(what ? `cannot render "${what}"\n${RENDER_USAGE}` : RENDER_USAGE);
  }
}
