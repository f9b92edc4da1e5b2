import { TorControl, parseBootstrapPhase } from './control.js';
import { setTimeout as sleep } from 'node:timers/promises';

/** Connects to a tor's control socket, retrying while tor is still starting. */
export async function connectControl(
  socketPath: string,
  cookiePath: string,
  timeoutMs = 30_000,
  isAlive: () => boolean = () => true,
): Promise<TorControl> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await TorControl.connect(socketPath, cookiePath);
    } catch (e) {
      if (!isAlive()) throw new Error(`tor exited before its control socket ${socketPath} answered`);
      if (Date.now() > deadline) throw new Error(`could not reach tor's control socket ${socketPath}: ${(e as Error).message}`);
      await sleep(200);
    }
  }
}

/** Waits until tor reports bootstrap progress 100. Returns the last phase seen. */
export async function waitBootstrapped(
  ctl: TorControl,
  timeoutMs: number,
  isAlive: () => boolean = () => true,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    if (!isAlive()) throw new Error(`tor exited while bootstrapping (last: ${last})`);
    try {
      last = await ctl.getInfo('status/bootstrap-phase');
      if (parseBootstrapPhase(last).progress >= 100) return;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`tor did not bootstrap within ${timeoutMs} ms (last: ${last})`);
    await sleep(250);
  }
}
