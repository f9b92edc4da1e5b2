// What every transport descriptor says about its kind of server. Pure: no config, no effects.

/** The client-side parameters of a bridge line that the server cannot know (from the config's `client:`). */
export interface ClientParams {
  /** The address in the line for transports that never dial it (snowflake, meek): a placeholder. */
  placeholder?: string;
  /** The client transport's name when it differs from the server's (meek: `meek_lite`). */
  transport?: string;
  /** snowflake: the broker's URL; meek: the server's URL. */
  url?: string;
  /** The domain-fronting host (meek; snowflake's `front=`). */
  front?: string;
  /** snowflake: several fronts (`fronts=`). */
  fronts?: string[];
  /** snowflake: STUN servers (`ice=`). */
  ice?: string[];
  /** snowflake: `utls-imitate=`. */
  utlsImitate?: string;
  /** snowflake: the WebSocket address the broker hands to proxies (`wss://HOST/`). */
  webSocketAddress?: string;
  /** Any further `key=value` for the line. */
  args?: Record<string, string>;
}

/** One transport of the bridge as the descriptors see it (the config's entry, resolved). */
export interface TransportEntry {
  name: string;
  command: string[];
  listen: string;
  publicAddress?: string;
  options: Record<string, string>;
  stateDir: string;
  client?: ClientParams;
}

/** What the transport reported in its SMETHOD line. */
export interface Smethod {
  transport: string;
  address: string;
  args: Record<string, string>;
}

export type StderrLevel = 'debug' | 'info' | 'warn' | 'error';

export interface StderrReading {
  level: StderrLevel;
  /** The line without the program's own timestamp, with client addresses scrubbed. */
  message: string;
  /** Set when the line means set-up failed although the transport may claim otherwise. */
  setupFailed?: string;
}

export interface Problem {
  /** The key the problem is about, relative to the entry (`options.url`, `command`). */
  key: string;
  message: string;
}

export interface BridgeLineInput {
  entry: TransportEntry;
  smethod: Smethod;
  /** The bridge's RSA fingerprint, 40 hex digits. */
  fingerprint: string;
  nickname: string;
}

export interface TransportKind {
  kind: 'obfs4' | 'snowflake' | 'meek' | 'webtunnel' | 'generic';
  /** Whether rdsys/BridgeDB can hand this bridge line out (no: snowflake and meek go through a broker or a front). */
  distributable: boolean;
  /** Files and directories under the state directory that must be kept (losing them changes what clients need). */
  state: string[];
  /** Problems with an entry before anything starts (each names its key). */
  check(e: TransportEntry): Problem[];
  /** The line after `Bridge` in a client's torrc; throws with what to set when the config lacks a client parameter. */
  bridgeLine(i: BridgeLineInput): string;
  /** snowflake: the broker's bridge-list line (JSON) for this bridge. */
  brokerEntry?(i: BridgeLineInput): string;
  /** How to log one line the transport printed on stderr. */
  readStderr(line: string): StderrReading;
  /** Whether an exit at a stop the supervisor asked for is normal (snowflake in ACME mode exits 1). */
  normalStopExit(e: TransportEntry, code: number | null, signal: string | null): boolean;
  /** Ports besides `listen` that the server opens (snowflake's ACME: port 80), as HOST:PORT. */
  extraListens(e: TransportEntry): string[];
}
