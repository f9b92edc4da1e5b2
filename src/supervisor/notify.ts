// systemd readiness, status and watchdog (sd_notify), through the systemd organisation's binding
// (`sd-notify`, an optional dependency). Without NOTIFY_SOCKET every call is a no-op.
import { createRequire } from 'node:module';
import type { Logger } from 'pino';

export interface Notifier {
  readonly enabled: boolean;
  ready(): void;
  status(text: string): void;
  stopping(): void;
  close(): void;
}

interface SdNotify {
  ready(): void;
  stopping(pid?: number): void;
  watchdog(): void;
  watchdogInterval(): number;
  sendStatus(text: string): void;
}

const noop: Notifier = { enabled: false, ready() {}, status() {}, stopping() {}, close() {} };

export function systemdNotifier(logger: Logger, env: NodeJS.ProcessEnv = process.env): Notifier {
  if (!env.NOTIFY_SOCKET) return noop;
  let sd: SdNotify;
  try {
    sd = createRequire(import.meta.url)('sd-notify') as SdNotify;
  } catch (e) {
    logger.warn(
      { err: (e as Error).message },
      'NOTIFY_SOCKET is set but the sd-notify binding is not installed (it needs libsystemd-dev at npm install time); systemd will not hear READY=1',
    );
    return noop;
  }
  let timer: NodeJS.Timeout | null = null;
  const usec = Number(env.WATCHDOG_USEC ?? 0);
  if (usec > 0) {
    // Ping at half the interval, as sd_watchdog_enabled(3) advises.
    const every = Math.max(100, Math.floor(usec / 2000));
    timer = setInterval(() => sd.watchdog(), every);
    timer.unref();
    logger.info({ everyMs: every }, 'systemd watchdog pings enabled');
  }
  let last = '';
  return {
    enabled: true,
    ready: () => sd.ready(),
    status: (text) => {
      if (text !== last) sd.sendStatus((last = text));
    },
    stopping: () => sd.stopping(process.pid),
    close: () => {
      if (timer) clearInterval(timer);
    },
  };
}
