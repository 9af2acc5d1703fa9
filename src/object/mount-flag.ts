/**
 * The 'already mounted' flag of a disk, kept by the bottom store: an S3 object, or a file in
 * --test mode, named and filled as the original s3backer does.
 */
import { hostname } from "node:os";
import { ConfigError } from "../errors.ts";
import { hex8 } from "./block-names.ts";

export const MOUNTED_FLAG = "s3backer-mounted";

export interface MountFlagStore {
  /** Who holds the flag, or undefined when it is clear. */
  holder(): Promise<string | undefined>;
  /** The mount token of the flag's holder, or undefined when it is clear. */
  token(): Promise<number | undefined>;
  /**
   * Sets the flag with `token` (from newToken, or SHARED_TOKEN); refuses (ConfigError) if it is
   * already set, unless `force`. A flag found set with this very token is ours (a retry after a
   * lost answer); SHARED_TOKEN admits other shared mounts. Returns a warning for the log, if any.
   */
  acquire(force: boolean, token: number): Promise<string | undefined>;
  clear(): Promise<void>;
}

/** The token of --sharedDiskMode mounts, the original's 0x7fffffff: one they all hold at once. */
export const SHARED_TOKEN = 0x7fffffff;

export function newToken(): number {
  for (;;) {
    const token = (Math.random() * 2 ** 32) >>> 0;
    if (token !== 0 && token !== SHARED_TOKEN) return token;
  }
}

/** The flag's content, as the original writes it: host name and UTC time (then, in --test mode, the token). */
export function flagText(token?: number): string {
  const now = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  return `${hostname()}\n${now}\n${token === undefined ? "" : `${hex8(token)}\n`}`;
}

/**
 * The flag as found before setting it: refused when held, unless both sides are shared mounts.
 * Returns true when the flag is already the shared one (a shared mount need not set it again).
 */
export function checkHeld(key: string, held: { holder: string; token: number } | undefined, token: number, force: boolean): boolean {
  if (!held) return false;
  const shared = token === SHARED_TOKEN;
  if (shared && held.token === SHARED_TOKEN) return true;
  if (force) return false;
  if (held.token === SHARED_TOKEN) throw new ConfigError(`the disk is mounted in shared disk mode (${key}: ${held.holder}): mount it with --sharedDiskMode too, or unmount those first`);
  throw mountedError(key, held.holder);
}

export function mountedError(key: string, holder: string): ConfigError {
  return new ConfigError(
    `the disk looks mounted elsewhere (${key}: ${holder}); use --force if it is not, or --reset-mounted-flag ` +
      "(after a crash of a mount with a --blockCacheFile, mount with that file and --blockCacheRecoverDirtyBlocks instead: it stores what the crash left)",
  );
}
