/**
 * The stats as the stats file shows them. The layers' counters only grow (so /metrics can serve
 * them as Prometheus counters, which must never go down); deleting the stats file (or its
 * mirror) resets what the file shows by remembering each counter's total at that moment, and
 * showing what was added since. Levels (gauges) and words are shown as they are.
 */
import { isCounter, type StatGroup } from "../util/stat-group.ts";

export class StatsView {
  /** Each counter's total at the last reset, by layer and name. */
  private baseline = new Map<string, number>();

  /** Where the stats come from: none until the disk is open. */
  source: () => StatGroup[] = () => [];

  /** Every layer's values, counters as totals since the process began (for /metrics). */
  totals(): StatGroup[] {
    return this.source();
  }

  /** Every layer's values, counters since the last reset (for the stats file, its mirror and SIGUSR1). */
  sinceReset(): StatGroup[] {
    return this.source().map((g) => ({
      layer: g.layer,
      values: g.values.map((stat) => (isCounter(stat) ? [stat[0], (stat[1] as number) - (this.baseline.get(key(g.layer, stat[0])) ?? 0), stat[2]] : stat)),
    }));
  }

  /** The stats file was deleted: its counters start again from zero; the totals go on. */
  reset(): void {
    const baseline = new Map<string, number>();
    for (const g of this.source()) for (const stat of g.values) if (isCounter(stat)) baseline.set(key(g.layer, stat[0]), stat[1] as number);
    this.baseline = baseline;
  }
}

const key = (layer: string, name: string) => `${layer}\0${name}`;
