import { resolve } from 'node:path';
import { fsReader, planSysctlFiles, writePlanned, MODULES_FILE, SYSCTL_FILE } from '../host-doctor/index.js';
import { parse, UsageError } from './args.js';

export const SYSCTL_USAGE = `usage: bridgectl sysctl [--dry-run | --write] [--root DIR]
Shows the difference between the installed ${SYSCTL_FILE} and ${MODULES_FILE}
and the ones bridgectl recommends. --dry-run (the default) only shows it; --write writes the files
(after showing the diff). --root DIR works on DIR/etc/... instead of /etc/... (for tests, images).`;

/** `bridgectl sysctl [--write] [--dry-run] [--root DIR]`. */
export async function sysctlCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    write: { type: 'boolean' },
    'dry-run': { type: 'boolean' },
    root: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(SYSCTL_USAGE);
    return 0;
  }
  if (values.write && values['dry-run']) throw new UsageError('--write and --dry-run exclude each other');
  const root = resolve(values.root ?? '/');
  const plan = await planSysctlFiles(fsReader(root));
  const where = (p: string): string => (root === '/' ? p : `${root}${p}`);
  for (const p of plan) {
    if (!p.changed) console.log(`${where(p.path)}: up to date`);
    else process.stdout.write(p.diff);
  }
  const changed = plan.filter((p) => p.changed);
  if (!changed.length) return 0;
  if (!values.write) {
    console.log(`\ndry run: nothing written. To write ${changed.map((p) => where(p.path)).join(' and ')}: bridgectl sysctl --write${values.root ? ` --root ${values.root}` : ''}`);
    return 0;
  }
  const written = await writePlanned(plan, root);
  console.log(`\nwrote ${written.map(where).join(', ')}`);
  if (root === '/') console.log('apply now with: modprobe nf_conntrack && sysctl --system   (they also apply at every boot)');
  return 0;
}
