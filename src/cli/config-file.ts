/**
 * `--configFile=FILE`, `-F FILE` and `-o configFile=FILE` are replaced, where they stand, by the
 * arguments in FILE: one a line, trimmed, blank lines and `#` lines skipped. A file may name
 * another; a loop is stopped after 100 files, as the original does. Each argument read from a file
 * remembers its `FILE:LINE`, so that a message about it can say where it was.
 */
import { ConfigError, UsageError } from "../errors.ts";
import { readInputFile } from "../util/flag-paths.ts";

/** One argument, and where a config file gave it (`FILE:LINE`). */
export interface Arg {
  text: string;
  origin?: string;
}

const MAX_FILES = 100;
const OPTION = "configFile=";

/** How an argument is named in a message: `--size=1G`, or `conf:3: --size=1G`. */
export const typedAt = (arg: Arg, typed = arg.text) => (arg.origin ? `${arg.origin}: ${typed}` : typed);

export function configFileArgs(text: string, path: string): Arg[] {
  return text
    .split("\n")
    .map((line, n) => ({ text: line.trim(), origin: `${path}:${n + 1}` }))
    .filter((a) => a.text !== "" && !a.text.startsWith("#"));
}

export function expandConfigFiles(argv: readonly string[]): Arg[] {
  const args: Arg[] = argv.map((text) => ({ text }));
  let files = 0;
  const include = (at: number, remove: number, path: string, typed: string) => {
    if (++files > MAX_FILES) throw new ConfigError(`${typed}: more than ${MAX_FILES} files (does one include itself?)`);
    if (path === "") throw new UsageError(`${typed} needs a file name`);
    args.splice(at, remove, ...configFileArgs(readInputFile(typed, path)!, path));
  };
  for (let i = 0; i < args.length; ) {
    const arg = args[i]!;
    const text = arg.text;
    if (text === "--") break;
    if (text.startsWith("--configFile=")) {
      include(i, 1, text.slice("--configFile=".length), typedAt(arg));
    } else if (text === "--configFile" || text === "-F") {
      if (i + 1 >= args.length) throw new UsageError(`${typedAt(arg)} needs a value (FILE)`);
      include(i, 2, args[i + 1]!.text, typedAt(arg, `${text} ${args[i + 1]!.text}`));
    } else if (text.startsWith("-F")) {
      include(i, 1, text.slice(2), typedAt(arg));
    } else if (text === "-o" && i + 1 < args.length && args[i + 1]!.text.split(",").some((o) => o.startsWith(OPTION))) {
      // The other -o options stay; the file's arguments follow them.
      const options = args[i + 1]!.text.split(",");
      const at = options.findIndex((o) => o.startsWith(OPTION));
      const path = options[at]!.slice(OPTION.length);
      const rest = options.filter((o, n) => n !== at && o !== "");
      const kept = rest.length > 0 ? [{ ...arg }, { ...args[i + 1]!, text: rest.join(",") }] : [];
      args.splice(i, 2, ...kept);
      include(i + kept.length, 0, path, typedAt(arg, `-o ${OPTION}${path}`));
    } else {
      i++;
    }
  }
  return args;
}
