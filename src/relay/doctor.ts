// doctor's relay-mode checks: relays per IPv4 address, each relay's own identity and the family
// key, and (with offline master keys) how soon each signing certificate expires.
import { orPortFor, MAX_RELAYS_PER_IPV4, type ResolvedConfig } from '../config/index.js';
import { finding, type Finding } from '../host-doctor/index.js';
import { relayProblems } from './members.js';
import { signingStates } from './sign.js';

export async function relayFindings(c: ResolvedConfig, configFile: string, now = new Date()): Promise<Finding[]> {
  const out: Finding[] = [];
  const per = new Map<string, number>();
  for (let i = 1; i <= c.instances; i++) {
    const host = (orPortFor(c.orPort, i) ?? '?').replace(/:\d+$/, '');
    per.set(host, (per.get(host) ?? 0) + 1);
  }
  const worstCount = Math.max(...per.values());
  out.push(
    finding(
      'relay.per-address',
      'relays per IPv4 address',
      worstCount > MAX_RELAYS_PER_IPV4 ? 'fail' : 'pass',
      [...per].map(([h, n]) => `${n} on ${h}`).join(', '),
      `at most ${MAX_RELAYS_PER_IPV4} per address (the directory authorities list no more)`,
      `lower "instances" or spread "orPort" over more addresses in ${configFile}`,
    ),
  );
  const problems = await relayProblems(c).catch((e: Error) => [`cannot read the keys: ${e.message}`]);
  out.push(
    finding(
      'relay.identities',
      'one identity per relay, one family key on all',
      problems.length ? 'fail' : 'pass',
      problems.length ? problems.join('\n') : `${c.instances} relays, ${c.instances} identities, the family key on each`,
      'every relay its own identity; the same family key in every relay\'s family key directory',
      `bridgectl init --config ${configFile} (after moving copied keys aside)`,
    ),
  );
  if (c.relay.masterKeyDir) {
    const states = await signingStates(c, now);
    const missing = states.filter((s) => !s.expires);
    const soon = states.filter((s) => s.daysLeft !== null && s.daysLeft < c.relay.signingWarnDays);
    const expired = soon.filter((s) => s.daysLeft! <= 0);
    const status = missing.length || expired.length ? 'fail' : soon.length ? 'warn' : 'pass';
    const found = states
      .map((s) => (s.expires ? `${s.name} expires ${s.expires.toISOString()} (${s.daysLeft!.toFixed(1)} days)` : `${s.name} has no signing certificate`))
      .join('\n');
    out.push(
      finding(
        'relay.signing-cert',
        'ed25519 signing certificates (offline master keys)',
        status,
        found,
        `every certificate valid for at least ${c.relay.signingWarnDays} more days (relay.signingWarnDays)`,
        `with the master keys at ${c.relay.masterKeyDir}: bridgectl keys sign --config ${configFile}`,
      ),
    );
  }
  return out;
}
