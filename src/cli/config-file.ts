/**
 * `--configFile=FILE`, `-F FILE` and `-o configFile=FILE` are replaced, where they stand, by the
 * arguments in FILE: one a line, trimmed, blank lines and `#` lines skipped. A file may name
 * another; a loop is stopped after 100 files, as the original does.
 */
import { ConfigError, UsageError } from "../errors.ts";
import { readInputFile } from "../util/flag-paths.ts";

export type ReadText = (path: string, typed: string) => string;

const MAX_FILES = 100;
const OPTION = "configFile=";

const readFile: ReadText = (path, typed) => readInputFile(typed, path)!;

export function configFileArgs(text: string): string[] {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
}

export function expandConfigFiles(argv: readonly string[], read: ReadText = readFile): string[] {
  const args = [...argv];
  let files = 0;
  const include = (at: number, remove: number, path: string, typed: string) => {
    if (++files > MAX_FILES) throw new ConfigError(`${typed}: more than ${MAX_FILES} files (does one include itself?)`);
    if (path === "") throw new UsageError(`${typed} needs a file name`);
    args.splice(at, remove, ...configFileArgs(read(path, typed)));
  };
  for (let i = 0; i < args.length; ) {
    const arg = args[i]!;
    if (arg === "--") break;
    if (arg.startsWith("--configFile=")) {
      include(i, 1, arg.slice("--configFile=".length), arg);
    } else if (arg === "--configFile" || arg === "-F") {
      if (i + 1 >= args.length) throw new UsageError(`${arg} needs a value (FILE)`);
      include(i, 2, args[i + 1]!, `${arg} ${args[i + 1]}`);
    } else if (arg.startsWith("-F")) {
      include(i, 1, arg.slice(2), arg);
    } else if (arg === "-o" && i + 1 < args.length && args[i + 1]!.split(",").some((o) => o.startsWith(OPTION))) {
      // The other -o options stay; the file's arguments follow them.
      const options = args[i + 1]!.split(",");
      const at = options.findIndex((o) => o.startsWith(OPTION));
      const path = options[at]!.slice(OPTION.length);
      const rest = options.filter((o, n) => n !== at && o !== "");
      const kept = rest.length > 0 ? ["-o", rest.join(",")] : [];
      args.splice(i, 2, ...kept);
      include(i + kept.length, 0, path, `-o configFile=${path}`);
    } else {
      i++;
    }
  }
  return args;
}
