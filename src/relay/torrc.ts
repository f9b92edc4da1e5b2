// A relay instance's torrc, from the config and the family's current members. Pure.
import { orPortFor, twinBandwidth, type InstanceLayout, type ResolvedConfig } from '../config/index.js';

export interface FamilyView {
  /** FamilyId (tor >= 0.4.9): the family key's public id. */
  id: string;
  /** Every member and its RSA fingerprint (MyFamily, for older tors), in instance order. */
  members: Array<{ name: string; fingerprint: string }>;
}

function oneLine(key: string, v: string): string {
  if (/[\r\n]/.test(v)) throw new Error(`${key} must be a single line`);
  return v;
}

/** The directory each instance's tor searches for the family's secret key. */
export function familyKeyDirOf(l: Pick<InstanceLayout, 'dataDir'>): string {
  return `${l.dataDir}/family`;
}

/** The host's bandwidth.rate/burst divided among its relays (re-divided when one is added or removed). */
function relayBandwidth(c: ResolvedConfig): string[] {
  const bw = twinBandwidth(c.bandwidth, c.instances);
  if (!bw) return ['# (no bandwidth limit)'];
  return [`# the host's bandwidth.rate/burst divided among its ${c.instances} relays`, `RelayBandwidthRate ${bw.rate}`, `RelayBandwidthBurst ${bw.burst}`];
}

export function renderRelayTorrc(c: ResolvedConfig, l: InstanceLayout, family: FamilyView): string {
  const v4 = orPortFor(c.orPort, l.index);
  if (!v4) throw new Error(`no ORPort for instance ${l.index} (orPort lists fewer ports than instances)`);
  const v6 = orPortFor(c.orPort6, l.index);
  const others = family.members.filter((m) => m.name !== l.name).map((m) => m.fingerprint);
  const lines = [
    `# Relay ${l.name} (${l.index} of ${c.instances}) of the family ${c.nickname}, rendered by bridgectl.`,
    '# Do not edit: edit the bridgectl config (its "torrc" key adds lines to every instance).',
    `Nickname ${l.name}`,
    `DataDirectory ${l.dataDir}`,
    `ORPort ${v4}`,
    ...(v6 ? [`ORPort ${v6}`] : []),
    'SocksPort 0',
    `ControlPort unix:${l.controlSocket}`,
    'CookieAuthentication 1',
    c.contactInfo ? `ContactInfo ${oneLine('contactInfo', c.contactInfo)}` : '# (no ContactInfo set)',
    `FamilyId ${oneLine('FamilyId', family.id)}`,
    `FamilyKeyDirectory ${familyKeyDirOf(l)}`,
    ...(c.relay.myFamily && others.length ? [`MyFamily ${others.map((fp) => `$${fp}`).join(',')}`] : []),
    ...(c.relay.masterKeyDir ? ['OfflineMasterKey 1'] : []),
    ...c.relay.exitPolicy.map((p) => `ExitPolicy ${oneLine('relay.exitPolicy', p)}`),
    ...relayBandwidth(c),
    ...(l.metricsPortAddress ? [`MetricsPort ${l.metricsPortAddress}`, 'MetricsPortPolicy accept 127.0.0.0/8'] : ['# (no MetricsPort)']),
    'Log notice stdout',
    '# --- extra lines from the config\'s "torrc" key ---',
    c.torrc.trim(),
  ];
  return lines.join('\n') + '\n';
}
