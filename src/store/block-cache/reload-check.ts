/**
 * The check against storage of the clean blocks a cache file reloads.
 *
 * Another host may have written them since. The mount answers at once; the check runs in the
 * background, CHECKS_IN_FLIGHT blocks at a time, and a block wanted before its turn is checked
 * first. A block whose stored MD5 differs from the one its record keeps is dropped (read from
 * storage again when wanted); one written whole meanwhile needs no check.
 */
import { messageOf } from "../../errors.ts";
import type { Logger } from "../../log.ts";

const CHECKS_IN_FLIGHT = 16;

export interface ReloadCheckHost {
  /** The MD5 hex of a block as stored (null: none). */
  storedMd5(block: number): Promise<string | null>;
  /** The MD5 hex of the zero block, which may be stored or absent. */
  readonly zeroMd5: string;
  /** Drops a block that differs from storage. */
  drop(block: number): void;
  /** Shows how far the background check got. */
  progress: { add(): void; finish(): void };
  log: Logger;
}

export class ReloadCheck {
  /** Blocks still to check, with the MD5 their record keeps (null: the zero block). */
  private readonly pending: Map<number, string | null>;
  private readonly checking = new Map<number, Promise<void>>();
  private started = false;
  private dropped = 0;

  constructor(
    blocks: Iterable<{ block: number; md5: string | null }>,
    private readonly host: ReloadCheckHost,
  ) {
    this.pending = new Map([...blocks].map((b) => [b.block, b.md5]));
  }

  /** Whether a block is still to be checked before its reloaded bytes may be used. */
  has(block: number): boolean {
    return this.pending.has(block);
  }

  get left(): number {
    return this.pending.size;
  }

  /** The blocks still to be checked (for the cache's invariant check). */
  unchecked(): Iterable<number> {
    return this.pending.keys();
  }

  /** The block needs no check any more (written whole, or dropped from the cache). */
  skip(block: number): void {
    this.pending.delete(block);
  }

  /** Checks a block now (or waits for the check under way); it is dropped if out of date. */
  check(block: number): Promise<void> {
    const running = this.checking.get(block);
    if (running) return running;
    const md5 = this.pending.get(block);
    if (md5 === undefined) return Promise.resolve();
    const done = this.host.storedMd5(block).then(
      (stored) => {
        this.checking.delete(block);
        if (!this.pending.delete(block)) return; // skipped meanwhile: the cache's bytes are newer
        const same = md5 === null ? stored === null || stored === this.host.zeroMd5 : stored === md5;
        if (!same) {
          this.dropped++;
          this.host.drop(block);
        }
      },
      (err) => {
        this.checking.delete(block);
        throw err;
      },
    );
    this.checking.set(block, done);
    return done;
  }

  /** Starts the background check (once). */
  start(): void {
    if (this.started || this.pending.size === 0) return;
    this.started = true;
    const total = this.pending.size;
    const { log, progress } = this.host;
    log.info(`cache file: checking ${total} clean blocks against storage in the background`);
    const blocks = this.pending.keys();
    let stopped = false;
    const worker = async () => {
      for (let next = blocks.next(); !next.done && !stopped; next = blocks.next()) {
        try {
          await this.check(next.value);
        } catch (err) {
          if (!stopped) log.warn(`cache file: background check stopped (${messageOf(err)}); blocks left are checked when first used`);
          stopped = true;
        }
        progress.add();
      }
    };
    void Promise.all(Array.from({ length: CHECKS_IN_FLIGHT }, worker)).then(() => {
      progress.finish();
      if (stopped) return;
      log.info(`cache file: ${total - this.dropped} clean blocks verified${this.dropped ? `, ${this.dropped} out of date and dropped` : ""}`);
    });
  }
}
