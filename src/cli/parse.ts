/**
 * Command line to raw flag values. The flag table (flags.ts) is the grammar: `--name=value` or
 * `--name value`, on/off flags that never take the next word, optional values only attached
 * (`--compress=zstd`), `-f`, `-d` (--debug plus -f, as the original), `-o OPTS`, `-h`. Values keep
 * the exact text typed (`--prefix=007` is "007"), and an error names a flag as the user typed it.
 * `--configFile=FILE` / `-F FILE` are replaced by the file's lines first (config-file.ts).
 */
import { UsageError } from "../errors.ts";
import { expandConfigFiles, type ReadText } from "./config-file.ts";
import { FLAG_BY_NAME, FLAGS, type Flag } from "./flags.ts";

export interface ParsedArgs {
  /** Flag name -> its text, or `true` for an on/off flag or an optional value left out. */
  readonly values: Map<string, string | true>;
  /** Every `-o` option, in order. */
  readonly mountOptions: string[];
  readonly positionals: string[];
}

const SHORT: ReadonlyMap<string, Flag> = new Map(FLAGS.filter((f) => f.short).map((f) => [f.short!, f]));

export function parseArgs(argv: readonly string[], readText?: ReadText): ParsedArgs {
  const args = expandConfigFiles(argv, readText);
  const values = new Map<string, string | true>();
  const mountOptions: string[] = [];
  const positionals: string[] = [];
  const set = (flag: Flag, value: string | true) => {
    if (flag.name === "options") mountOptions.push(...String(value).split(",").filter((o) => o !== ""));
    else values.set(flag.name, value);
  };

  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const typed = eq < 0 ? arg : arg.slice(0, eq);
      const flag = FLAG_BY_NAME.get(typed.slice(2));
      if (!flag) throw new UsageError(`unknown flag '${typed}'`);
      if (eq >= 0) {
        if (!flag.value) throw new UsageError(`${typed} takes no value`);
        set(flag, flag.optionalValue && eq === arg.length - 1 ? true : arg.slice(eq + 1));
      } else if (!flag.value || flag.optionalValue) {
        set(flag, true);
      } else {
        // The next word is the value, unless it is a flag (`--blockSize --size=1M` lacks one).
        if (i + 1 >= args.length || args[i + 1]!.startsWith("--")) throw new UsageError(`${typed} needs a value (${flag.value})`);
        set(flag, args[++i]!);
      }
      continue;
    }
    if (arg.startsWith("-") && arg.length > 1) {
      // A cluster of one-letter flags (`-fd`); one that takes a value ends it (`-oallow_other`).
      for (let c = 1; c < arg.length; c++) {
        const letter = arg[c]!;
        if (letter === "d") {
          values.set("debug", true);
          values.set("foreground", true);
          continue;
        }
        const flag = SHORT.get(letter);
        if (!flag) throw new UsageError(`unknown flag '-${letter}'`);
        if (!flag.value) {
          set(flag, true);
          continue;
        }
        const rest = arg.slice(c + 1);
        if (rest !== "") set(flag, rest);
        else if (i + 1 < args.length) set(flag, args[++i]!);
        else throw new UsageError(`-${letter} needs a value (${flag.value})`);
        break;
      }
      continue;
    }
    positionals.push(arg);
  }
  return { values, mountOptions, positionals };
}

/** Splits `-o` options into our own flags (`size=1G`) and the rest, which go to the kernel mount. */
export function splitMountOptions(options: readonly string[]): {
  flags: Map<string, string | true>;
  fuse: string[];
} {
  const flags = new Map<string, string | true>();
  const fuse: string[] = [];
  for (const opt of options) {
    const eq = opt.indexOf("=");
    const name = eq < 0 ? opt : opt.slice(0, eq);
    if (FLAG_BY_NAME.has(name) && name !== "options") flags.set(name, eq < 0 ? true : opt.slice(eq + 1));
    else fuse.push(opt);
  }
  return { flags, fuse };
}
