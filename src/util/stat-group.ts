/**
 * What every layer shows in the stats file and /metrics: its name and its values, in order. A
 * layer only counts up: the stats file's reset (deleting it) is a view kept above the layers.
 */
export interface StatGroup {
  /** Which layer these values belong to, e.g. "local directory". */
  readonly layer: string;
  readonly values: ReadonlyArray<Stat>;
}

/** One value: a number or a word; without `how`, a level at this moment (a gauge). */
export type Stat = readonly [name: string, value: number | string, how?: StatKind];

/**
 * `counter`: a total since the process began, that never goes down. `labels`: what the metric
 * tells apart; each label's value, a word of the stat's name, is left out of the metric's name
 * ("GET requests" with kind GET is s3backer_s3_requests_total{kind="GET"}).
 */
export interface StatKind {
  readonly counter?: boolean;
  readonly labels?: Labels;
}

export type Labels = Readonly<Record<string, string>>;

/** How a plain counter says what it is (shared: a stat costs no allocation of its own). */
export const COUNTER: StatKind = { counter: true };

export function isCounter(stat: Stat): boolean {
  return stat[2]?.counter === true;
}
