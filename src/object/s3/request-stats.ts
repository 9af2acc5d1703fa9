/** Per-kind request counters with latency percentiles, for the stats file and benchmarks. */

export type RequestKind = "GET" | "PUT" | "DELETE" | "HEAD" | "LIST";
const KINDS: RequestKind[] = ["GET", "PUT", "DELETE", "HEAD", "LIST"];
const WINDOW = 2048;

class KindStats {
  count = 0;
  errors = 0;
  retries = 0;
  bytes = 0;
  /** The most recent latencies (ms), a ring, for p50/p99. */
  private readonly latencies = new Float64Array(WINDOW);
  private filled = 0;

  record(ms: number): void {
    this.latencies[this.count % WINDOW] = ms;
    this.count++;
    this.filled = Math.min(WINDOW, this.filled + 1);
  }

  percentile(p: number): number {
    if (this.filled === 0) return 0;
    const sorted = this.latencies.slice(0, this.filled).sort();
    return sorted[Math.min(this.filled - 1, Math.floor((p / 100) * this.filled))]!;
  }
}

export class RequestStats {
  private kinds = new Map(KINDS.map((k) => [k, new KindStats()]));

  of(kind: RequestKind): KindStats {
    return this.kinds.get(kind)!;
  }

  reset(): void {
    this.kinds = new Map(KINDS.map((k) => [k, new KindStats()]));
  }

  entries(): [string, number | string][] {
    const out: [string, number | string][] = [];
    for (const [kind, s] of this.kinds) {
      out.push([`${kind} requests`, s.count], [`${kind} errors`, s.errors], [`${kind} retries`, s.retries]);
      if (kind === "GET" || kind === "PUT") out.push([`${kind} bytes`, s.bytes]);
      if (s.count > 0) out.push([`${kind} latency p50/p99 ms`, `${s.percentile(50).toFixed(1)}/${s.percentile(99).toFixed(1)}`]);
    }
    return out;
  }
}
