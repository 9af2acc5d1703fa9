import type { Histogram } from "./histogram.ts";

/**
 * What every layer shows in the stats file and /metrics: its name and its values, in order. A
 * layer only counts up: the stats file's reset (deleting it) is a view kept above the layers.
 */
export interface StatGroup {
  /** Which layer these values belong to, e.g. "local directory". */
  readonly layer: string;
  readonly values: ReadonlyArray<Stat>;
  /** Distributions, for /metrics only (the stats file shows percentiles of its own among the values). */
  readonly histograms?: ReadonlyArray<HistogramStat>;
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

/** A histogram for /metrics: `name` as a stat's (its unit a word of it), what it measures, and what tells it apart from its kin. */
export interface HistogramStat {
  readonly name: string;
  readonly help: string;
  readonly labels: Labels;
  readonly histogram: Histogram;
}

/** How a plain counter says what it is (shared: a stat costs no allocation of its own). */
export const COUNTER: StatKind = { counter: true };

export function isCounter(stat: Stat): boolean {
  return stat[2]?.counter === true;
}
