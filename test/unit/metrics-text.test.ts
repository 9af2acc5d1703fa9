/**
 * The stats as Prometheus reads them: names, types, units and labels derived from the layers'
 * stats; promtool (Debian's prometheus package) checks the format and its naming rules.
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { metricsText } from "../../src/app/metrics-text.ts";
import { Histogram } from "../../src/util/histogram.ts";
import { COUNTER, type StatGroup } from "../../src/util/stat-group.ts";

const get = { counter: true, labels: { kind: "GET" } };
const put = { counter: true, labels: { kind: "PUT" } };
const durations = new Histogram([0.01, 0.1]);
for (const seconds of [0.005, 0.01, 0.05, 3]) durations.observe(seconds);

const GROUPS: StatGroup[] = [
  { layer: "block cache", values: [["read hits", 3, COUNTER], ["blocks dirty", 2], ["write-back bytes", 8192, COUNTER]] },
  { layer: "codec", values: [["cipher", "AES-128-CBC (native)"]] },
  {
    layer: "S3",
    values: [["GET requests", 5, get], ["PUT requests", 1, put], ["GET bytes", 100, get], ["GET latency p50/p99 ms", "1.0/2.0"]],
    histograms: [{ name: "request duration seconds", help: "How long", labels: { kind: "GET" }, histogram: durations }],
  },
  { layer: "process", values: [["resident MiB", 2], ["forced collection ms", 1500, COUNTER]] },
  { layer: "odd", values: [['a"b\\c requests', 1, { counter: true, labels: { kind: 'a"b\\c' } }]] },
];

const text = metricsText(GROUPS, { version: "1.2.3", runtime: "bun 1" });
const lines = text.split("\n");

test("a counter is NAME_total of type counter, a level a gauge; each with its HELP and TYPE once, before its samples", () => {
  expect(lines.slice(0, 6)).toEqual([
    "# HELP s3backer_build_info The running s3backer: its version and runtime",
    "# TYPE s3backer_build_info gauge",
    's3backer_build_info{version="1.2.3",runtime="bun 1"} 1',
    "# HELP s3backer_block_cache_read_hits_total [block cache] read hits, as in the stats file",
    "# TYPE s3backer_block_cache_read_hits_total counter",
    "s3backer_block_cache_read_hits_total 3",
  ]);
  expect(text).toContain("# TYPE s3backer_block_cache_blocks_dirty gauge\ns3backer_block_cache_blocks_dirty 2\n");
  expect(text).toContain("# TYPE s3backer_block_cache_write_back_bytes_total counter\ns3backer_block_cache_write_back_bytes_total 8192\n");
});

test("units go last, in bytes and seconds, the values scaled; words stay in the stats file", () => {
  expect(text).toContain("\ns3backer_process_resident_bytes 2097152\n");
  expect(text).toContain("\ns3backer_process_forced_collection_seconds_total 1.5\n");
  expect(text).not.toContain("cipher");
  expect(text).not.toContain("p50");
});

test("a label's value leaves the name: one family, its samples told apart by the label", () => {
  expect(lines.filter((l) => l.startsWith("# TYPE s3backer_s3_requests_total "))).toEqual(["# TYPE s3backer_s3_requests_total counter"]);
  expect(lines).toContain("# HELP s3backer_s3_requests_total [S3] <kind> requests, as in the stats file");
  expect(lines).toContain('s3backer_s3_requests_total{kind="GET"} 5');
  expect(lines).toContain('s3backer_s3_requests_total{kind="PUT"} 1');
  expect(lines).toContain('s3backer_s3_bytes_total{kind="GET"} 100');
  expect(lines).toContain('s3backer_odd_requests_total{kind="a\\"b\\\\c"} 1');
});

test("a histogram's buckets are cumulative, +Inf is its count, then its sum and count", () => {
  expect(lines.filter((l) => l.startsWith("s3backer_s3_request_duration_seconds"))).toEqual([
    's3backer_s3_request_duration_seconds_bucket{kind="GET",le="0.01"} 2',
    's3backer_s3_request_duration_seconds_bucket{kind="GET",le="0.1"} 3',
    's3backer_s3_request_duration_seconds_bucket{kind="GET",le="+Inf"} 4',
    `s3backer_s3_request_duration_seconds_sum{kind="GET"} ${0.005 + 0.01 + 0.05 + 3}`,
    's3backer_s3_request_duration_seconds_count{kind="GET"} 4',
  ]);
  expect(lines).toContain("# TYPE s3backer_s3_request_duration_seconds histogram");
});

test("promtool check metrics accepts it: format, names, units, HELP", () => {
  const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
  if (r.error) throw new Error(`promtool is missing (apt-get install prometheus): ${r.error.message}`);
  expect(`${r.stdout}${r.stderr}`).toBe("");
  expect(r.status).toBe(0);
});
