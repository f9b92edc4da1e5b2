#!/usr/bin/env node
// bridgectl's command line. Each command lives in its own file under src/cli/.
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config/index.js';
import { initCommand } from './init.js';
import { runCommand } from './run.js';
import { keysCommand } from './keys.js';
import { labCommand } from './lab.js';
import { statusCommand } from './status.js';
import { bridgelineCommand } from './bridgeline.js';
import { doctorCommand } from './doctor.js';
import { addInstanceCommand, removeInstanceCommand, reloadCommand } from './instances.js';
import { sysctlCommand } from './sysctl.js';
import { renderCommand } from './render.js';
import { restartCommand } from './restart.js';
import { balancerCommand, extorStaticCookieCommand } from './balancer.js';
import { migrateCommand } from './migrate.js';
import { UsageError } from './args.js';
import { printError } from '../log/index.js';

const USAGE = `usage: bridgectl <command> [options]      (bridgectl --version; bridgectl <command> --help)

commands:
  init [--config FILE]            create keys, pins and the static cookie under dataDir (idempotent)
  run [--config FILE]             run the supervisor in the foreground
  keys verify [--config FILE]     check that every instance shares one identity and is pinned
  keys export FILE [--include-cookie] [--force] [--config FILE]
                                  write the identity and onion keys (with modes and a manifest) to FILE, mode 0600
  keys import FILE [--force] [--config FILE]
                                  install an exported identity into dataDir and every instance (then what init does);
                                  other keys: refused, or moved aside with --force
  status [--json] [--watch] [--config FILE]
                                  the running supervisor's view of twins, balancer and transport (--watch: live)
  keys sign [--no-restart] [--config FILE]
                                  relay mode, offline master keys: renew every relay's signing certificate
  add-instance [--config FILE]    the running supervisor adds a twin (and updates the config file)
  remove-instance [NAME] [--drain-seconds N]
                                  drain one twin (default: the last), then stop it
  restart [--drain-seconds N]     rolling restart of the twins, one at a time, each drained first (resumable)
  reload [--config FILE]          the running supervisor re-reads its config (like SIGHUP)
  bridgeline [--json] [--broker] [--config FILE]
                                  each transport's Bridge line (--broker: Snowflake's bridge-list entry)
  restart transport NAME [--config FILE]
                                  the running supervisor restarts one transport alone
  lab [--instances N] [--keep]    the private-lab demo (needs root; runs in its own network namespace)
  doctor [--json] [--config FILE] kernel, limits, keys and tor checks, with the fix for each
  sysctl [--write] [--root DIR]   show (default) or write the sysctl.d and modules-load.d files
  render systemd|sysctl|modules|haproxy|torrc N
                                  print deployment files
  balancer --listen ADDR --cookie FILE --backend ADDR=COOKIEFILE [...]
                                  the balancer alone, in front of tor instances you run yourself
  migrate [--apply] [--root DIR] [--config FILE] [--data-dir DIR]
                                  move an existing bridge (tor@ instances + HAProxy, or one tor) onto bridgectl
  extor-static-cookie COOKIEFILE  drop-in managed-transport shim with a static cookie (old layout)

The config is --config FILE, else $BRIDGECTL_CONFIG, else ./bridgectl.yaml if it exists,
else /etc/bridgectl/bridgectl.yaml.`;

type Command = (argv: string[]) => Promise<number>;

const commands: Record<string, Command> = {
  init: initCommand,
  run: runCommand,
  keys: keysCommand,
  lab: labCommand,
  status: statusCommand,
  bridgeline: bridgelineCommand,
  'add-instance': addInstanceCommand,
  'remove-instance': removeInstanceCommand,
  reload: reloadCommand,
  restart: restartCommand,
  doctor: doctorCommand,
  sysctl: sysctlCommand,
  render: renderCommand,
  balancer: balancerCommand,
  'extor-static-cookie': extorStaticCookieCommand,
  migrate: migrateCommand,
};

/** The usage lines of one command (its line and the indented lines that continue it). */
function commandUsage(cmd: string): string {
  const lines = USAGE.split('\n');
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.startsWith(`  ${cmd} `) && lines[i] !== `  ${cmd}`) continue;
    out.push(lines[i]!.slice(2));
    while (lines[i + 1]?.startsWith('        ')) out.push(lines[++i]!.slice(2));
  }
  return `usage: bridgectl ${out.join('\n')}\n\nThe config is --config FILE, else $BRIDGECTL_CONFIG, else ./bridgectl.yaml if it exists, else /etc/bridgectl/bridgectl.yaml.`;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    console.log(USAGE);
    return cmd ? 0 : 2;
  }
  if (cmd === '--version' || cmd === '-V') {
    console.log(`bridgectl ${version()}`);
    return 0;
  }
  const f = commands[cmd];
  if (!f) {
    console.error(`bridgectl: unknown command "${cmd}"\n\n${USAGE}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(commandUsage(cmd));
    return 0;
  }
  return f(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof ConfigError) {
      printError(`bridgectl: configuration error\n${e.message}`);
      process.exitCode = 78; // EX_CONFIG
    } else if (e instanceof UsageError) {
      console.error(`bridgectl: ${e.message}`);
      process.exitCode = 2;
    } else {
      printError(`bridgectl: ${e instanceof Error ? e.message : String(e)}`);
      process.exitCode = 1;
    }
  },
);
