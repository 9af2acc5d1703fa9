/** Named counters a layer keeps for the stats file; reset when the stats file is deleted. */
export class Counters<Name extends string> {
  private readonly values: Map<Name, number>;

  constructor(names: readonly Name[]) {
    this.values = new Map(names.map((n) => [n, 0]));
  }

  add(name: Name, amount = 1): void {
    this.values.set(name, this.values.get(name)! + amount);
  }

  entries(): [Name, number][] {
    return [...this.values];
  }

  reset(): void {
    for (const name of this.values.keys()) this.values.set(name, 0);
  }
}
