// The recommended kernel settings as data, and the sysctl.d / modules-load.d files made from them
// (templates/sysctl.conf.tmpl, templates/modules-load.conf.tmpl). deploy/ holds the same files.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fillTemplate, templatesDir } from '../supervisor/index.js';

/** Ephemeral ports: wide, and above bridgectl's default listening ports (10000, 10100). */
export const RECOMMENDED_PORT_RANGE: [number, number] = [15000, 64999];
/** What the Snowflake bridge operators settled on (snowflake#40239); doctor asks for more if needed. */
export const RECOMMENDED_CONNTRACK_MAX = 524_288;
export const RECOMMENDED_CONNTRACK_BUCKETS = 524_288;
/**
 * Pipe pages one user may hold before the kernel gives new pipes 2 pages (8 KiB) instead of 16 and
 * refuses to grow them (fs.pipe-user-pages-soft, default 16,384 = 1,024 default pipes). The
 * balancer holds a pipe per direction with bytes in flight, 16 pages, and 256 once it grows for
 * bulk: 4 GiB of capacity (capacity, not memory: a pipe pins only the pages it carries).
 */
export const RECOMMENDED_PIPE_USER_PAGES = 1_048_576;

export const SYSCTL_FILE_NAME = '60-bridgectl.conf';
export const MODULES_FILE_NAME = 'bridgectl.conf';
/** Where `bridgectl sysctl --write` puts them (under --root). */
export const SYSCTL_FILE = `/etc/sysctl.d/${SYSCTL_FILE_NAME}`;
export const MODULES_FILE = `/etc/modules-load.d/${MODULES_FILE_NAME}`;

/** The settings the sysctl.d file makes, by key. */
export function recommendedSysctls(): Record<string, string> {
  return {
    'net.ipv4.ip_local_port_range': `${RECOMMENDED_PORT_RANGE[0]} ${RECOMMENDED_PORT_RANGE[1]}`,
    'net.netfilter.nf_conntrack_max': String(RECOMMENDED_CONNTRACK_MAX),
    'net.netfilter.nf_conntrack_buckets': String(RECOMMENDED_CONNTRACK_BUCKETS),
    'fs.pipe-user-pages-soft': String(RECOMMENDED_PIPE_USER_PAGES),
  };
}

/** Modules the modules-load.d file loads at boot. */
export const RECOMMENDED_MODULES = ['nf_conntrack'] as const;

function template(name: string): string {
  return readFileSync(join(templatesDir(), name), 'utf8');
}

export function renderSysctlConf(tmpl: string = template('sysctl.conf.tmpl')): string {
  const s = recommendedSysctls();
  return fillTemplate(tmpl, {
    portRange: s['net.ipv4.ip_local_port_range']!,
    conntrackMax: s['net.netfilter.nf_conntrack_max']!,
    conntrackBuckets: s['net.netfilter.nf_conntrack_buckets']!,
    pipeUserPages: s['fs.pipe-user-pages-soft']!,
    sysctlFile: SYSCTL_FILE,
    modulesFile: MODULES_FILE,
  });
}

export function renderModulesLoadConf(tmpl: string = template('modules-load.conf.tmpl')): string {
  return fillTemplate(tmpl, { modules: RECOMMENDED_MODULES.join('\n'), sysctlFile: SYSCTL_FILE });
}
