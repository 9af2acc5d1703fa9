/**
 * Command line to raw flag values, with cac.
 *
 * cac (through mri) turns number-like text into numbers, which would make `--prefix=007` the prefix
 * "7" and a password "0123" the password "123". So every value is swapped for an opaque token before
 * cac sees it and swapped back afterwards: the text a user typed is the text we get.
 */
import { cac } from "cac";
import { UsageError } from "../errors.ts";
import { FLAG_BY_NAME, FLAGS, type Flag } from "./flags.ts";

export interface ParsedArgs {
  /** Flag name -> its text, or `true` for an on/off flag or an optional value left out. */
  readonly values: Map<string, string | true>;
  /** Every `-o` option, in order. */
  readonly mountOptions: string[];
  readonly positionals: string[];
}

const TOKEN = "\uE000";

export function parseArgs(argv: readonly string[]): ParsedArgs {
  const saved: string[] = [];
  const protect = (text: string) => TOKEN + (saved.push(text) - 1);
  const restore = (v: unknown): string => {
    const s = String(v);
    return s.startsWith(TOKEN) ? saved[Number(s.slice(1))]! : s;
  };
  // As in the original, -d is --debug plus -f, while --debug alone keeps the background mode.
  const expanded = argv.flatMap((arg) => (arg === "-d" ? ["--debug", "-f"] : [arg]));
  const protectedArgv = expanded.map((arg) => {
    if (!arg.startsWith("-") || arg.length === 1) return protect(arg);
    if (!arg.startsWith("--")) return arg;
    const eq = arg.indexOf("=");
    const flag = FLAG_BY_NAME.get(arg.slice(2, eq < 0 ? undefined : eq));
    if (eq > 0) {
      if (flag && !flag.value) throw new UsageError(`--${flag.name} takes no value`);
      return arg.slice(0, eq + 1) + protect(arg.slice(eq + 1));
    }
    // As in the original, an optional value must be attached (`--compress=9`): the next word is not it.
    if (flag?.optionalValue) return `${arg}=${protect("")}`;
    // Spelt out, so that mri cannot take the next word as the value of an on/off flag.
    if (flag && !flag.value) return `${arg}=true`;
    return arg;
  });

  const cli = cac("s3backer");
  for (const flag of FLAGS) cli.option(optionSpec(flag), flag.help);
  let positionals: string[] = [];
  cli.command("[...args]").action((args: unknown[]) => {
    positionals = args.map(restore);
  });

  let options: Record<string, unknown>;
  try {
    ({ options } = cli.parse(["", "", ...protectedArgv], { run: false }));
    cli.runMatchedCommand();
  } catch (err) {
    if (err instanceof Error && err.name === "CACError") throw new UsageError(err.message.replace(/`/g, "'"));
    throw err;
  }

  const values = new Map<string, string | true>();
  const mountOptions: string[] = [];
  for (const flag of FLAGS) {
    const raw = options[camelCase(flag.name)];
    if (raw === undefined || raw === false) continue;
    const list = Array.isArray(raw) ? raw : [raw];
    if (flag.name === "options") {
      for (const v of list) mountOptions.push(...restore(v).split(",").filter((o) => o !== ""));
      continue;
    }
    const last = list[list.length - 1];
    if (!flag.value) {
      values.set(flag.name, true);
    } else if (last === true) {
      throw new UsageError(`--${flag.name} needs a value (${flag.value})`);
    } else {
      const text = restore(last);
      values.set(flag.name, flag.optionalValue && text === "" ? true : text);
    }
  }
  return { values, mountOptions, positionals };
}

function optionSpec(flag: Flag): string {
  const long = `--${flag.name}`;
  const names = flag.short ? `-${flag.short}, ${long}` : long;
  if (!flag.value) return names;
  return flag.optionalValue ? `${names} [${flag.value}]` : `${names} <${flag.value}>`;
}

function camelCase(name: string): string {
  return name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
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
