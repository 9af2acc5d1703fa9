/** The README's flag table, made from the flag table (a test keeps the README in step). */
import { FLAGS } from "./flags.ts";

export function flagTableMarkdown(): string {
  const rows = FLAGS.map((f) => {
    const name = `${[...(f.short ?? "")].map((c) => `\`-${c}\`, `).join("")}\`--${f.name}${f.value ? (f.optionalValue ? `[=${f.value}]` : `=${f.value}`) : ""}\``;
    const def = f.default === undefined ? "" : f.default === "" ? '`""`' : `\`${f.default}\``;
    return `| ${name} | ${f.group} | ${def} | ${f.help.replace(/\|/g, "\\|")} |`;
  });
  return ["| flag | topic | default | meaning |", "|---|---|---|---|", ...rows].join("\n");
}

if (import.meta.main) console.log(flagTableMarkdown());
