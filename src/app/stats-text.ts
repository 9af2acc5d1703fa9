/** The stats file's text: every layer's counters, top layer first; as text or JSON. */
import type { StatGroup } from "../store/block-store.ts";

export function statsText(groups: readonly StatGroup[], format: "text" | "json"): string {
  if (format === "json") return `${JSON.stringify(Object.fromEntries(groups.map((g) => [g.layer, Object.fromEntries(g.values)])), null, 2)}\n`;
  const lines: string[] = [];
  for (const group of groups) {
    lines.push(`[${group.layer}]`);
    for (const [name, value] of group.values) lines.push(`${name.padEnd(28)}${value}`);
  }
  return `${lines.join("\n")}\n`;
}
