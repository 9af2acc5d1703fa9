/**
 * Durations counted into fixed buckets, as Prometheus histograms are: an observation is a few
 * comparisons and two additions, never an allocation. The bounds cover a local server's
 * sub-millisecond answers up to the default --timeout.
 */
export const DURATION_BOUNDS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class Histogram {
  /** Observations in each bucket alone (not cumulative): bucket i holds those <= bounds[i] and > bounds[i-1]; the last, those above every bound. */
  readonly counts: Float64Array;
  count = 0;
  sum = 0;

  constructor(readonly bounds: readonly number[] = DURATION_BOUNDS) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]++;
    this.count++;
    this.sum += value;
  }
}
