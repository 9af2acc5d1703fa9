/**
 * Keeps the process near its memory budget (the block cache plus 100 MiB). The garbage collector
 * sizes its heap from the live data, so with a gigabyte of cached blocks it lets hundreds of
 * megabytes of short-lived request garbage pile up before it collects; when the resident size
 * comes within MARGIN of the budget and has grown since the last collection, this collects (at
 * most every CHECK_MS: 1-2% of a core under a storm of small requests). The resident size seldom drops after a collection (the allocator keeps
 * freed pages for reuse), but it stops growing: the garbage of the next requests reuses them. An
 * idle process is left alone. A collection takes a few milliseconds; the stats file shows how many
 * there were and how long they took.
 */
import type { StatGroup } from "./store/block-store.ts";
import { runtime } from "./runtime/index.ts";

const CHECK_MS = 100;
/** Collections start this far below the budget, so that the garbage made between checks fits. */
const MARGIN = 64 * 2 ** 20;
/** Growth since the last collection that counts as new garbage. */
const GROWTH = 2 * 2 ** 20;
export const BUDGET_HEADROOM = 100 * 2 ** 20;

export class MemoryBudget {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private collections = 0;
  private afterLast = 0;
  private collectingMs = 0;
  private peak = 0;

  constructor(private readonly limit: number) {}

  start(): void {
    this.schedule();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    this.timer = setTimeout(() => this.check(), CHECK_MS);
    this.timer.unref?.();
  }

  private check(): void {
    const rss = process.memoryUsage.rss();
    this.peak = Math.max(this.peak, rss);
    if (rss > this.limit - MARGIN && rss > this.afterLast + GROWTH) {
      const started = performance.now();
      if (!runtime.collectGarbage()) return; // nothing to be done here: stop checking
      this.collectingMs += performance.now() - started;
      this.collections++;
      this.afterLast = process.memoryUsage.rss();
    }
    this.schedule();
  }

  stats(): StatGroup {
    return {
      layer: "process",
      values: [
        ["resident MiB", Math.round(process.memoryUsage.rss() / 2 ** 20)],
        ["peak resident MiB", Math.round(Math.max(this.peak, process.memoryUsage.rss()) / 2 ** 20)],
        ["memory budget MiB", Math.round(this.limit / 2 ** 20)],
        ["forced collections", this.collections],
        ["forced collection ms", Math.round(this.collectingMs)],
      ],
    };
  }
}
