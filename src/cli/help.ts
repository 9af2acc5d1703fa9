/** `--help` text, made from the flag table and the command table. */
import { FLAGS, type Flag, type FlagGroup } from "./flags.ts";
import { COMMANDS, commandSpec, commandUsage, type Command } from "./commands.ts";

const COMMAND_NAMES = Object.keys(COMMANDS) as Command[];

export const USAGE = `Usage:
  s3backer [options] bucket[/prefix] mountpoint
  s3backer --test [options] directory mountpoint
  s3backer --base=bucket/golden[@snap] [options] bucket/clone mountpoint
  s3backer --erase [options] bucket[/prefix]
  s3backer --reset-mounted-flag [options] bucket[/prefix]
${COMMAND_NAMES.map((c) => `  ${commandUsage(c)}`).join("\n")}
  s3backer s3-server [--dir=DIR] [--port=N] --access-key=ID --secret-key=KEY

Commands (with the mount's flags for the S3 connection and encryption):
${COMMAND_NAMES.map((c) => `  ${c.padEnd(10)}${commandSpec(c).summary}`).join("\n")}`;

const EXIT_STATUS = "Exit status: 0 success, 1 error, 2 bad usage; scrub: 3 damaged blocks left, 4 all damaged blocks repaired.";

function left(flag: Flag): string {
  const long = `--${flag.name}`;
  const names = flag.short ? `${[...flag.short].map((c) => `-${c}, `).join("")}${long}` : `    ${long}`;
  if (!flag.value) return names;
  return flag.optionalValue ? `${names}[=${flag.value}]` : `${names}=${flag.value}`;
}

function flagLine(flag: Flag, width: number): string {
  let text = flag.help;
  if (flag.default !== undefined) text += ` [default: ${flag.default === "" ? '""' : flag.default}]`;
  return `  ${left(flag).padEnd(width)}${text}`;
}

export function helpText(): string {
  const width = Math.max(...FLAGS.map((f) => left(f).length)) + 2;
  const groups = new Map<FlagGroup, Flag[]>();
  for (const flag of FLAGS) groups.set(flag.group, [...(groups.get(flag.group) ?? []), flag]);
  const lines = [USAGE, ""];
  for (const [group, flags] of groups) {
    lines.push(`${group}:`);
    for (const flag of flags) lines.push(flagLine(flag, width));
    lines.push("");
  }
  lines.push(EXIT_STATUS);
  return lines.join("\n");
}

/** `s3backer <command> --help`: its usage, what it does, and its own flags. */
export function commandHelp(command: Command): string {
  const spec = commandSpec(command);
  const own = FLAGS.filter((f) => spec.flags.includes(f.name));
  const width = Math.max(0, ...own.map((f) => left(f).length)) + 2;
  return [
    `Usage: ${commandUsage(command)}`,
    `${spec.summary[0]!.toUpperCase()}${spec.summary.slice(1)}.`,
    ...(own.length ? ["", "Its own flags:", ...own.map((f) => flagLine(f, width))] : []),
    "",
    "It takes the mount's flags for the S3 connection and encryption: see 's3backer --help'.",
  ].join("\n");
}
