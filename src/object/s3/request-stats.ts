/**
 * Per-kind request counters and latencies, for the stats file, /metrics and benchmarks: totals
 * since the process began, a histogram of every answered request's duration, and the most recent
 * durations for the stats file's percentiles.
 */
import { Histogram } from "../../util/histogram.ts";
import type { HistogramStat, Stat, StatKind } from "../../util/stat-group.ts";

export type RequestKind = "GET" | "PUT" | "DELETE" | "HEAD" | "LIST";
const KINDS: RequestKind[] = ["GET", "PUT", "DELETE", "HEAD", "LIST"];
const WINDOW = 2048;

class KindStats {
  errors = 0;
  retries = 0;
  bytes = 0;
  /** Answered requests' durations in seconds; its count is the requests answered. */
  readonly durations = new Histogram();
  /** The most recent latencies (ms), a ring, for p50/p99. */
  private readonly latencies = new Float64Array(WINDOW);
  private filled = 0;
  /** What each of this kind's stats is, made once. */
  readonly how: StatKind;

  constructor(readonly kind: RequestKind) {
    this.how = { counter: true, labels: { kind } };
  }

  get count(): number {
    return this.durations.count;
  }

  record(ms: number): void {
    this.latencies[this.count % WINDOW] = ms;
    this.durations.observe(ms / 1000);
    this.filled = Math.min(WINDOW, this.filled + 1);
  }

  percentile(p: number): number {
    if (this.filled === 0) return 0;
    const sorted = this.latencies.slice(0, this.filled).sort();
    return sorted[Math.min(this.filled - 1, Math.floor((p / 100) * this.filled))]!;
  }
}

export class RequestStats {
  private readonly kinds = new Map(KINDS.map((k) => [k, new KindStats(k)]));

  of(kind: RequestKind): KindStats {
    return this.kinds.get(kind)!;
  }

  entries(): Stat[] {
    const out: Stat[] = [];
    for (const [kind, s] of this.kinds) {
      out.push([`${kind} requests`, s.count, s.how], [`${kind} errors`, s.errors, s.how], [`${kind} retries`, s.retries, s.how]);
      if (kind === "GET" || kind === "PUT") out.push([`${kind} bytes`, s.bytes, s.how]);
      if (s.count > 0) out.push([`${kind} latency p50/p99 ms`, `${s.percentile(50).toFixed(1)}/${s.percentile(99).toFixed(1)}`]);
    }
    return out;
  }

  histograms(): HistogramStat[] {
    return [...this.kinds.values()].map((s) => ({ name: "request duration seconds", help: "How long each answered request took (its failed attempts and the pauses between them apart)", labels: s.how.labels!, histogram: s.durations }));
  }
}
