// The deployment files: the systemd unit and the HAProxy config, rendered from templates/, plus the
// list of files under deploy/ that are exactly what `bridgectl render` prints for the defaults.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { instanceNames, type ResolvedConfig } from '../config/index.js';
import { fillTemplate, templatesDir } from '../supervisor/index.js';
import {
  MODULES_FILE_NAME,
  SYSCTL_FILE_NAME,
  UNIT_LIMIT_NOFILE,
  renderModulesLoadConf,
  renderSysctlConf,
} from '../host-doctor/index.js';

function template(name: string): string {
  return readFileSync(join(templatesDir(), name), 'utf8');
}

export interface UnitOptions {
  /** The bridgectl executable (default /usr/bin/bridgectl). */
  bin: string;
  /** The config file the service runs with. */
  config: string;
  /** User, group, and the name of its state/runtime/configuration directories. */
  user: string;
  limitNofile: number;
}

export const DEFAULT_UNIT: Readonly<UnitOptions> = {
  bin: '/usr/bin/bridgectl',
  config: '/etc/bridgectl/bridgectl.yaml',
  user: 'bridgectl',
  limitNofile: UNIT_LIMIT_NOFILE,
};

const oneWord = (what: string, v: string): string => {
  if (!/^[^\s"'\\$%]+$/.test(v)) throw new Error(`${what} must be one word without quotes, "$", "%" or "\\" (got "${v}")`);
  return v;
};

export function renderSystemdUnit(o: Partial<UnitOptions> = {}, tmpl: string = template('bridgectl.service.tmpl')): string {
  const given = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<UnitOptions>;
  const u: UnitOptions = { ...DEFAULT_UNIT, ...given };
  if (!u.bin.startsWith('/')) throw new Error(`the bridgectl executable must be an absolute path (got "${u.bin}")`);
  if (!/^[a-z_][a-z0-9_-]*$/.test(u.user)) throw new Error(`not a user name: "${u.user}"`);
  return fillTemplate(tmpl, {
    bin: oneWord('bin', u.bin),
    config: oneWord('config', u.config),
    user: u.user,
    limitNofile: u.limitNofile,
  });
}

/** Where extor-static-cookie shim N listens in the HAProxy layout (snowflake bridge guide). */
export const SHIM_PORT = 10000;

function ipv4ToInt(a: string): number {
  return a.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}
function intToIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

/** Address i (1-based) of a CIDR range, refusing to run past its end. */
export function addressInRange(cidr: string, i: number): string {
  const [base, bits] = cidr.split('/');
  const size = 2 ** (32 - Number(bits));
  if (i < 1 || i >= size - 1) throw new Error(`${cidr} has no room for address number ${i}`);
  const net = ipv4ToInt(base!) - (ipv4ToInt(base!) % size);
  return intToIpv4(net + i);
}

export type HaproxyConfig = Pick<ResolvedConfig, 'nickname' | 'instances' | 'extOrPort' | 'balancer'>;

export function renderHaproxy(
  c: HaproxyConfig,
  o: { configFile: string; bin?: string },
  tmpl: string = template('haproxy.cfg.tmpl'),
): string {
  const bin = o.bin ?? DEFAULT_UNIT.bin;
  const names = instanceNames(c);
  const torrcLines = names
    .map((name, k) => {
      const i = k + 1;
      return [
        `#   ${name}:`,
        `#     ExtORPort 127.0.4.${i}:auto`,
        `#     ServerTransportPlugin extor_static_cookie exec ${bin} extor-static-cookie ${c.balancer.cookieFile}`,
        `#     ServerTransportListenAddr extor_static_cookie 127.0.3.${i}:${SHIM_PORT}`,
      ].join('\n');
    })
    .join('\n');
  const servers = names
    .map((name, k) => `\tserver ${name} 127.0.3.${k + 1}:${SHIM_PORT} source ${addressInRange(c.balancer.sourceRange, k + 1)}`)
    .join('\n');
  return fillTemplate(tmpl, {
    nickname: c.nickname,
    configFile: o.configFile,
    listen: c.balancer.listen,
    shimPort: SHIM_PORT,
    extOrPort: c.extOrPort,
    cookieFile: c.balancer.cookieFile,
    torrcLines,
    // HAProxy needs two descriptors per connection; stay within the unit's LimitNOFILE.
    maxconn: Math.min(c.balancer.maxSessions, Math.floor(UNIT_LIMIT_NOFILE / 2) - 1024),
    servers,
  });
}

/** deploy/ files that must equal `bridgectl render ...` for the defaults (test/deploy.test.ts). */
export function renderedDeployFiles(): Array<{ path: string; render: string; text: string }> {
  return [
    { path: 'deploy/bridgectl.service', render: 'bridgectl render systemd', text: renderSystemdUnit() },
    { path: `deploy/sysctl.d/${SYSCTL_FILE_NAME}`, render: 'bridgectl render sysctl', text: renderSysctlConf() },
    { path: `deploy/modules-load.d/${MODULES_FILE_NAME}`, render: 'bridgectl render modules', text: renderModulesLoadConf() },
  ];
}
