/** What every layer shows in the stats file: its name and its counters, in order. */
export interface StatGroup {
  /** Which layer these counters belong to, e.g. "local directory". */
  readonly layer: string;
  readonly values: ReadonlyArray<readonly [name: string, value: number | string]>;
}
