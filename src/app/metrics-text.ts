/**
 * The layers' stats in Prometheus' text exposition format (0.0.4), derived here and only here:
 * each numeric stat of the stats file is one sample, named `s3backer_<layer>_<stat>` in
 * snake_case, its unit (a word of the stat's name: bytes, MiB, ms, seconds) moved to the end in
 * base units (bytes, seconds) and the value scaled to it, `_total` after a counter's name. A
 * stat's labels come out of its name ("GET requests" with kind GET: s3backer_s3_requests_total
 * {kind="GET"}). Words (a cipher's name, the listing's state) stay in the stats file.
 */
import type { Histogram } from "../util/histogram.ts";
import type { Labels, Stat, StatGroup } from "../util/stat-group.ts";

const PREFIX = "s3backer_";
export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** A unit as stats name it, the base unit a metric names instead, and the factor between them. */
const UNITS: Readonly<Record<string, readonly [unit: string, factor: number]>> = {
  bytes: ["bytes", 1],
  MiB: ["bytes", 2 ** 20],
  ms: ["seconds", 1 / 1000],
  seconds: ["seconds", 1],
};

interface Family {
  readonly type: "counter" | "gauge" | "histogram";
  readonly help: string;
  readonly samples: string[];
}

/** The exposition of `groups` (totals since the process began), after a build_info line made of `build`. */
export function metricsText(groups: readonly StatGroup[], build: Labels): string {
  const families = new Map<string, Family>();
  const family = (name: string, type: Family["type"], help: string) => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { type, help, samples: [] }));
    return f.samples;
  };
  family(`${PREFIX}build_info`, "gauge", "The running s3backer: its version and runtime").push(sample(`${PREFIX}build_info`, build, 1));
  for (const group of groups) {
    const layer = snake(group.layer);
    for (const stat of group.values) {
      if (typeof stat[1] !== "number") continue;
      const m = metricOf(layer, group.layer, stat);
      family(m.name, stat[2]?.counter ? "counter" : "gauge", m.help).push(sample(m.name, stat[2]?.labels, stat[1] * m.factor));
    }
    for (const h of group.histograms ?? []) {
      const { name } = metricOf(layer, group.layer, [h.name, 0]);
      family(name, "histogram", `[${group.layer}] ${h.help}`).push(...histogramSamples(name, h.labels, h.histogram));
    }
  }
  const lines: string[] = [];
  for (const [name, f] of families) lines.push(`# HELP ${name} ${escapeHelp(f.help)}`, `# TYPE ${name} ${f.type}`, ...f.samples);
  return `${lines.join("\n")}\n`;
}

/** A stat's metric name, its help, and the factor from its value to the metric's base unit. */
function metricOf(layer: string, layerName: string, [statName, , how]: Stat): { name: string; help: string; factor: number } {
  const labels = how?.labels ?? {};
  const labelOf = new Map(Object.entries(labels).map(([label, value]) => [value, label]));
  let unit: readonly [string, number] | undefined;
  const words: string[] = [];
  for (const word of statName.split(" ")) {
    if (labelOf.has(word)) continue;
    if (UNITS[word] && !unit) unit = UNITS[word];
    else words.push(word);
  }
  const name = PREFIX + [layer, snake(words.join(" ")), unit?.[0], how?.counter ? "total" : ""].filter(Boolean).join("_");
  const shown = statName.split(" ").map((w) => (labelOf.has(w) ? `<${labelOf.get(w)}>` : w)).join(" ");
  const scaled = unit && unit[1] !== 1 ? ` (in ${unit[0]})` : "";
  return { name, help: `[${layerName}] ${shown}, as in the stats file${scaled}`, factor: unit?.[1] ?? 1 };
}

function histogramSamples(name: string, labels: Labels, h: Histogram): string[] {
  const out: string[] = [];
  let cumulative = 0;
  for (let i = 0; i < h.bounds.length; i++) {
    cumulative += h.counts[i]!;
    out.push(sample(`${name}_bucket`, { ...labels, le: String(h.bounds[i]) }, cumulative));
  }
  cumulative += h.counts[h.bounds.length]!;
  out.push(sample(`${name}_bucket`, { ...labels, le: "+Inf" }, cumulative), sample(`${name}_sum`, labels, h.sum), sample(`${name}_count`, labels, h.count));
  return out;
}

function sample(name: string, labels: Labels | undefined, value: number): string {
  const pairs = labels ? Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`) : [];
  return `${name}${pairs.length ? `{${pairs.join(",")}}` : ""} ${formatNumber(value)}`;
}

/** Go's ParseFloat reads these: integers as they are, fractions in JavaScript's shortest form, and the infinities and NaN by their names. */
function formatNumber(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (!Number.isFinite(value)) return value > 0 ? "+Inf" : "-Inf";
  return String(value);
}

const snake = (text: string) => text.toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_+|_+$/g, "");
const escapeHelp = (text: string) => text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
const escapeLabel = (text: string) => text.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
