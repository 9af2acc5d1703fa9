/** The stats file's text: every layer's counters, top layer first. */
import type { StatGroup } from "./store/block-store.ts";

export function statsText(groups: readonly StatGroup[]): string {
  const lines: string[] = [];
  for (const group of groups) {
    lines.push(`[${group.layer}]`);
    for (const [name, value] of group.values) lines.push(`${name.padEnd(28)}${value}`);
  }
  return `${lines.join("\n")}\n`;
}
