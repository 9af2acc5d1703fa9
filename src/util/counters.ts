/** Named counters a layer keeps for the stats file and /metrics: totals since the process began, never reset. */
import { COUNTER, type Stat } from "./stat-group.ts";

export class Counters<Name extends string> {
  private readonly values: Map<Name, number>;

  constructor(names: readonly Name[]) {
    this.values = new Map(names.map((n) => [n, 0]));
  }

  add(name: Name, amount = 1): void {
    this.values.set(name, this.values.get(name)! + amount);
  }

  entries(): Stat[] {
    return [...this.values].map(([name, value]) => [name, value, COUNTER]);
  }
}
