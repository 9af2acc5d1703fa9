/** `--help` text, made from the flag table. */
import { FLAGS, type Flag, type FlagGroup } from "./flags.ts";

export const USAGE = `Usage:
  s3backer [options] bucket[/prefix] mountpoint
  s3backer --test [options] directory mountpoint
  s3backer --erase [options] bucket[/prefix]
  s3backer --reset-mounted-flag [options] bucket[/prefix]
  s3backer --base=bucket/golden[@snap] [options] bucket/clone mountpoint
  s3backer snapshot [options] bucket/disk bucket/disk@NAME
  s3backer flatten [options] bucket/disk
  s3backer info [options] bucket/disk[@NAME]
  s3backer resize [options] bucket/disk SIZE
  s3backer s3-server [--dir=DIR] [--port=N] --access-key=ID --secret-key=KEY`;

function left(flag: Flag): string {
  const long = `--${flag.name}`;
  const names = flag.short ? `${[...flag.short].map((c) => `-${c}, `).join("")}${long}` : `    ${long}`;
  if (!flag.value) return names;
  return flag.optionalValue ? `${names}[=${flag.value}]` : `${names}=${flag.value}`;
}

export function helpText(): string {
  const width = Math.max(...FLAGS.map((f) => left(f).length)) + 2;
  const groups = new Map<FlagGroup, Flag[]>();
  for (const flag of FLAGS) groups.set(flag.group, [...(groups.get(flag.group) ?? []), flag]);
  const lines = [USAGE, ""];
  for (const [group, flags] of groups) {
    lines.push(`${group}:`);
    for (const flag of flags) {
      let text = flag.help;
      if (flag.default !== undefined) text += ` [default: ${flag.default === "" ? '""' : flag.default}]`;
      lines.push(`  ${left(flag).padEnd(width)}${text}`);
    }
    lines.push("");
  }
  lines.push("Exit status: 0 success, 1 error, 2 bad usage.");
  return lines.join("\n");
}
