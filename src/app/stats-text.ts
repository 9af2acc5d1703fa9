/** The stats file's text: every layer's counters, top layer first; as text or JSON. */
import type { StatGroup } from "../util/stat-group.ts";

export function statsText(groups: readonly StatGroup[], format: "text" | "json"): string {
  if (format === "json") return `${JSON.stringify(Object.fromEntries(groups.map((g) => [g.layer, Object.fromEntries(g.values)])), null, 2)}\n`;
  const lines: string[] = [];
  for (const group of groups) {
    lines.push(`[${group.layer}]`);
    for (const [name, value] of group.values) lines.push(`${name.padEnd(28)}${value}`);
  }
  return `${lines.join("\n")}\n`;
}

/** The stats as log lines, one a layer ("stats [block cache] read hits 12, ..."): for SIGUSR1. */
export function statsLogLines(groups: readonly StatGroup[]): string[] {
  return groups.map((g) => `stats [${g.layer}] ${g.values.map(([name, value]) => `${name} ${value}`).join(", ")}`);
}
