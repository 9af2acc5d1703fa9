/**
 * Command line to raw flag values. The flag table (flags.ts) is the grammar: `--name=value` or
 * `--name value`, on/off flags that never take the next word, optional values only attached
 * (`--compress=zstd`), one-letter flags (`-f`, `-d` is --debug plus -f as the original, `-s`,
 * `-h`/`-?`, `-v`/`-V`), and `-o OPTS`, whose options are our flags (`size=1G`) or mount options.
 * A flag given twice, in any of its forms, takes the last value given, as upstream's parser does.
 * Values keep the exact text typed (`--prefix=007` is "007"), and each remembers how it was typed
 * and where (`-o size=1G`, `conf:3: --size=1G`), for messages. `--configFile=FILE` / `-F FILE` are
 * replaced by the file's lines first (config-file.ts).
 */
import { UsageError } from "../errors.ts";
import { type Arg, expandConfigFiles, typedAt } from "./config-file.ts";
import { FLAG_BY_NAME, FLAGS, type Flag } from "./flags.ts";
import { isCommand, type Command } from "./commands.ts";

/** A value given, how it was typed (`--size=1G`, `-o size=1G`), and where, when a config file gave it (`conf:3`). */
export interface Given {
  value: string | true;
  typed: string;
  origin?: string;
}

export interface ParsedArgs {
  /** The first word, when it names a command (`s3backer scrub ...`). */
  readonly command?: Command;
  /** Flag name -> its last value (`true` for an on/off flag or an optional value left out), in the order last given. */
  readonly values: Map<string, Given>;
  /** The `-o` options that are not our flags, in order: for FUSE and the kernel mount. */
  readonly mountOptions: { option: string; typed: string }[];
  readonly positionals: string[];
}

const SHORT: ReadonlyMap<string, Flag> = new Map(FLAGS.flatMap((f) => [...(f.short ?? "")].map((letter) => [letter, f] as const)));

export function parseArgs(argv: readonly string[]): ParsedArgs {
  const command = isCommand(argv[0]) ? argv[0] : undefined;
  const args = expandConfigFiles(command ? argv.slice(1) : argv);
  const values = new Map<string, Given>();
  const mountOptions: ParsedArgs["mountOptions"] = [];
  const positionals: string[] = [];
  // Kept in the order last given (a later one replaces and follows the others).
  const given = (name: string, value: Given) => {
    values.delete(name);
    values.set(name, value);
  };
  const set = (flag: Flag, value: string | true, typed: string, at: Arg) => {
    if (flag.name === "options") options(String(value), at);
    else given(flag.name, { value, typed, ...(at.origin ? { origin: at.origin } : {}) });
  };
  // Each -o option is one of our flags (a value after '=', or none), or a mount option.
  const options = (list: string, at: Arg) => {
    for (const option of list.split(",").filter((o) => o !== "")) {
      const eq = option.indexOf("=");
      const flag = FLAG_BY_NAME.get(eq < 0 ? option : option.slice(0, eq));
      const typed = `-o ${option}`;
      if (flag && flag.name !== "options") given(flag.name, { value: eq < 0 ? true : option.slice(eq + 1), typed, ...(at.origin ? { origin: at.origin } : {}) });
      else mountOptions.push({ option, typed: typedAt(at, typed) });
    }
  };

  for (let i = 0; i < args.length; i++) {
    const at = args[i]!;
    const arg = at.text;
    if (arg === "--") {
      positionals.push(...args.slice(i + 1).map((a) => a.text));
      break;
    }
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = eq < 0 ? arg : arg.slice(0, eq);
      const flag = FLAG_BY_NAME.get(name.slice(2));
      if (!flag) throw new UsageError(`${typedAt(at, `unknown flag '${name}'`)}`);
      if (eq >= 0) {
        if (!flag.value) throw new UsageError(`${typedAt(at, name)} takes no value`);
        set(flag, flag.optionalValue && eq === arg.length - 1 ? true : arg.slice(eq + 1), arg, at);
      } else if (!flag.value || flag.optionalValue) {
        set(flag, true, arg, at);
      } else {
        // The next word is the value, unless it is a flag (`--blockSize --size=1M` lacks one).
        if (i + 1 >= args.length || args[i + 1]!.text.startsWith("--")) throw new UsageError(`${typedAt(at, name)} needs a value (${flag.value})`);
        const value = args[++i]!.text;
        set(flag, value, `${name} ${value}`, at);
      }
      continue;
    }
    if (arg.startsWith("-") && arg.length > 1) {
      // A cluster of one-letter flags (`-fd`); one that takes a value ends it (`-oallow_other`).
      for (let c = 1; c < arg.length; c++) {
        const letter = arg[c]!;
        if (letter === "d") {
          set(FLAG_BY_NAME.get("debug")!, true, "-d", at);
          set(FLAG_BY_NAME.get("foreground")!, true, "-d", at);
          continue;
        }
        const flag = SHORT.get(letter);
        if (!flag) throw new UsageError(`${typedAt(at, `unknown flag '-${letter}'`)}`);
        if (!flag.value) {
          set(flag, true, `-${letter}`, at);
          continue;
        }
        const rest = arg.slice(c + 1);
        if (rest !== "") set(flag, rest, arg, at);
        else if (i + 1 < args.length) set(flag, args[++i]!.text, `-${letter} ${args[i]!.text}`, args[i]!.origin ? args[i]! : at);
        else throw new UsageError(`${typedAt(at, `-${letter}`)} needs a value (${flag.value})`);
        break;
      }
      continue;
    }
    positionals.push(arg);
  }
  return { ...(command ? { command } : {}), values, mountOptions, positionals };
}
