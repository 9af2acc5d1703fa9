/**
 * The subcommands, `s3backer <name> [flags] <arguments>`: one table that parsing, --help, the man
 * page, the configuration and main.ts all read. Each takes the mount's flags (S3 connection,
 * encryption) and one disk first; `flags` are those that are for it alone (the flag table has them
 * with the rest). `s3backer s3-server` is not among them: it is the bundled server, with flags of
 * its own (src/s3server/cli.ts).
 */
export interface CommandSpec {
  /** One line for --help and the man page. */
  readonly summary: string;
  /** Its arguments, the disk first, as usage lines show them. */
  readonly args: string;
  /** How many arguments it takes after the disk. */
  readonly extra: number;
  /** Flags that only this command takes. */
  readonly flags: readonly string[];
  /** Why it needs S3 (refused in --test mode), if it does. */
  readonly s3Only?: string;
}

const LAYERS = "layers are not kept in --test mode";

export const COMMANDS = {
  snapshot: { summary: "freeze the disk's present state as bucket/disk@NAME (mounted or not; nothing copied)", args: "bucket/disk bucket/disk@NAME", extra: 1, flags: [], s3Only: LAYERS },
  flatten: { summary: "make a clone a disk of its own in the original's layout (copies inherited blocks server-side)", args: "bucket/disk", extra: 0, flags: [], s3Only: LAYERS },
  info: { summary: "show a disk's size, encoding, key, mounted state, layers, snapshots and clones", args: "bucket/disk[@NAME]", extra: 0, flags: [], s3Only: LAYERS },
  resize: { summary: "give a disk a new size (online when mounted here; a shrink that drops data needs --force)", args: "bucket/disk SIZE", extra: 1, flags: [], s3Only: LAYERS },
  passwd: {
    summary: "change the password of a disk made with --encrypt --keyWrap (its key object only: no block is rewritten)",
    args: "bucket[/prefix]", extra: 0, flags: ["newPasswordFile"], s3Only: "in --test mode nothing is encrypted",
  },
  scrub: {
    summary: "read and check every stored block, and report the damaged ones (--repair-from=PATH rewrites them)",
    args: "bucket[/prefix]", extra: 0, flags: ["repair-from", "scrub-rate", "scrub-threads"],
  },
} as const satisfies Record<string, CommandSpec>;

export type Command = keyof typeof COMMANDS;

export const isCommand = (word: string | undefined): word is Command => word !== undefined && Object.hasOwn(COMMANDS, word);

export const commandSpec = (command: Command): CommandSpec => COMMANDS[command];

/** The command a flag is for, if it is one command's own. */
export function commandOfFlag(flag: string): Command | undefined {
  return (Object.keys(COMMANDS) as Command[]).find((c) => commandSpec(c).flags.includes(flag));
}

/** `s3backer <command> [options] <args>`. */
export const commandUsage = (command: Command) => `s3backer ${command} [options] ${COMMANDS[command].args}`;
