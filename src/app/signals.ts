/**
 * The mount's answer to every signal a user may send whose default action would end the process:
 * none may end it with blocks written and not stored, nor leave a dead mount behind.
 *
 * - Stop (unmount, or stop serving NBD; store every block; exit): SIGTERM, SIGINT, SIGHUP, SIGQUIT
 *   (a quit, not a core dump: a dump would lose the dirty blocks), and SIGXCPU (a soft CPU-time
 *   limit reached: stop cleanly before the hard limit kills). Once stopping, the next one gives up
 *   storing (see final-store.ts). One that comes while starting is carried out once the mount is
 *   up; a second one then exits at once.
 * - SIGUSR1 writes the stats to the log.
 * - Logged and ignored: SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGIO (SIGPOLL), SIGPWR (Bun's engine
 *   takes it for itself: ignored there without a line), and SIGXFSZ (a file over its size limit:
 *   the write fails with EFBIG instead). SIGPIPE is ignored silently:
 *   a write to a reader gone (the parent's pipe, a closed socket) fails with EPIPE, which says so.
 *
 * Left as they are: SIGKILL and SIGSTOP (they cannot be caught), the stops SIGTSTP, SIGTTIN and
 * SIGTTOU (SIGCONT resumes), the fault signals (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP,
 * SIGSYS: a core dump is what they ask for), SIGSTKFLT (Bun cannot catch it) and the real-time signals.
 */
import { log } from "../log.ts";

const STOP = ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGXCPU"] as const;
const IGNORED = ["SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGPWR", "SIGXFSZ"] as const;

/** What gives up storing, for the log. */
export const GIVE_UP_SIGNALS = "a second SIGTERM or SIGINT";

export class MountSignals {
  /** Aborted, with the reason as a phrase ("SIGTERM again"), when a stop signal comes while storing. */
  readonly giveUp = new AbortController();
  private stop: ((signal: string) => void) | undefined;
  /** The stop signal that came before the front end was up. */
  private pendingStop: string | undefined;
  private stopping = false;
  private storing = false;
  private readonly handlers: [string, () => void][] = [];

  constructor(statsLines: () => string[]) {
    for (const s of STOP) this.on(s, () => this.stopSignal(s));
    this.on("SIGUSR1", () => statsLines().forEach((line) => log.info(line)));
    for (const s of IGNORED) this.on(s, () => log.info(`${s}: ignored`));
    this.on("SIGPIPE", () => {});
  }

  /** The front end is up: `stop` unmounts it (at once, if a stop signal came while starting). */
  serving(stop: (signal: string) => void): void {
    this.stop = stop;
    if (this.pendingStop) stop(this.pendingStop);
  }

  /** The front end has ended and its blocks are being stored: the next stop signal is a warning, the one after gives up. */
  storingNow(): void {
    this.storing = true;
  }

  remove(): void {
    for (const [signal, handler] of this.handlers.splice(0)) process.off(signal, handler);
  }

  private on(signal: string, handler: () => void): void {
    process.on(signal, handler);
    this.handlers.push([signal, handler]);
  }

  private stopSignal(signal: string): void {
    if (this.stopping && !this.stop) {
      // Nothing is written yet: a start-up that hangs (storage away) is ended at once.
      log.warn(`${signal} again while starting: exiting`);
      process.exit(1);
    } else if (this.stopping) {
      if (this.giveUp.signal.aborted) return;
      log.warn(`${signal} again: giving up storing`);
      this.giveUp.abort(`${signal} again`);
    } else if (this.storing) {
      this.stopping = true;
      log.warn(`${signal}: still storing what was written; send it again to give up`);
    } else {
      this.stopping = true;
      if (this.stop) this.stop(signal);
      else this.pendingStop = signal;
    }
  }
}
