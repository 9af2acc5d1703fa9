/**
 * Keeps the process near its memory budget (the block cache plus 100 MiB). The garbage collector
 * sizes its heap from the live data, so with a gigabyte of cached blocks it lets hundreds of
 * megabytes of garbage pile up before it collects. Two triggers, both only once the resident size
 * is within MARGIN of the budget:
 * - every DROPPED_STEP of block buffers the cache lets go (evicted or replaced by a copy), a full
 *   collection at once: a sequential read or write past a full cache drops a block per block it
 *   takes in, faster than a timer would catch (about 2 ms per collection: ~4% of a core at 400 MB/s);
 * - every CHECK_MS, a collection if the resident size grew since the last one (the small garbage
 *   of many requests) by half the room that was left. An idle process is left alone, and looked
 *   at less often: while its resident size stays put, the checks space out to IDLE_CHECK_MS.
 * A collection returns the freed blocks to the allocator, which gives the next ones the same
 * pages: the resident size stops growing. The stats file shows how many there were and how long
 * they took.
 */
import { COUNTER, type StatGroup } from "../util/stat-group.ts";
import { runtime } from "../runtime/index.ts";

const CHECK_MS = 25;
/** Longest wait between checks while the resident size stays within STILL of the last check's. */
const IDLE_CHECK_MS = 200;
const STILL = 2 ** 20;
/** Block buffers let go that call for a collection at once. */
const DROPPED_STEP = 16 * 2 ** 20;
/** Collections start this far below the budget, so that the garbage made between checks fits. */
const MARGIN = 64 * 2 ** 20;
/**
 * Growth since the last collection that calls for the next: half the room left below the budget,
 * at least MIN_GROWTH. Memory then closes in on the budget in ever smaller steps without passing
 * it, and a process with room collects rarely (under 4 KiB random I/O, a collection costs ~10 ms).
 */
const MIN_GROWTH = 2 * 2 ** 20;
export const BUDGET_HEADROOM = 100 * 2 ** 20;

export class MemoryBudget {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private collections = 0;
  private afterLast = 0;
  private collectingMs = 0;
  private peak = 0;
  private dropped = 0;
  private interval = CHECK_MS;
  private lastResident = 0;

  /**
   * `residentBytes` reads the process's resident size; `collectGarbage` runs a full collection and
   * says whether it could (a test may stand in for either).
   */
  constructor(
    private readonly limit: number,
    private readonly residentBytes: () => number = () => process.memoryUsage.rss(),
    private readonly collectGarbage: () => boolean = () => runtime.collectGarbage(),
  ) {}

  start(): void {
    this.schedule();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    this.timer = setTimeout(() => this.check(), this.interval);
    this.timer.unref?.();
  }

  /** The block cache let go of a block buffer of `bytes`. */
  droppedBlock(bytes: number): void {
    this.dropped += bytes;
    if (this.dropped < DROPPED_STEP || !this.timer) return;
    this.dropped = 0;
    const rss = this.residentBytes();
    this.peak = Math.max(this.peak, rss);
    if (rss > this.limit - MARGIN) this.collect();
  }

  private check(): void {
    const rss = this.residentBytes();
    this.peak = Math.max(this.peak, rss);
    // An idle mount need not wake 40 times a second: the wait doubles while nothing moves.
    this.interval = Math.abs(rss - this.lastResident) < STILL ? Math.min(2 * this.interval, IDLE_CHECK_MS) : CHECK_MS;
    this.lastResident = rss;
    const growth = Math.max(MIN_GROWTH, (this.limit - this.afterLast) / 2);
    if (rss > this.limit - MARGIN && rss > this.afterLast + growth && !this.collect()) return; // nothing to be done here: stop checking
    this.schedule();
  }

  /** A full collection now; false where the runtime cannot (Deno). */
  private collect(): boolean {
    const started = performance.now();
    if (!this.collectGarbage()) {
      this.stop();
      return false;
    }
    this.collectingMs += performance.now() - started;
    this.collections++;
    this.dropped = 0;
    this.afterLast = this.residentBytes();
    return true;
  }

  stats(): StatGroup {
    const heap = runtime.heapBytes();
    return {
      layer: "process",
      values: [
        ["resident MiB", Math.round(this.residentBytes() / 2 ** 20)],
        ["peak resident MiB", Math.round(Math.max(this.peak, this.residentBytes()) / 2 ** 20)],
        ["memory budget MiB", Math.round(this.limit / 2 ** 20)],
        ["heap objects MiB", Math.round(heap.objects / 2 ** 20)],
        ["heap buffers MiB", Math.round(heap.buffers / 2 ** 20)],
        ["forced collections", this.collections, COUNTER],
        ["forced collection ms", Math.round(this.collectingMs), COUNTER],
      ],
    };
  }
}
