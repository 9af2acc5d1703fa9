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
   * Sets the flag with `token` (from newToken); refuses (ConfigError) if it is already set, unless
   * `force`. A flag found set with this very token is ours (a retry after a lost answer).
   */
  acquire(force: boolean, token: number): Promise<void>;
  clear(): Promise<void>;
}

export const newToken = () => (Math.random() * 2 ** 32) >>> 0 || 1;

/** The flag's content, as the original writes it: host name and UTC time (then, in --test mode, the token). */
export function flagText(token?: number): string {
  const now = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  return `${hostname()}\n${now}\n${token === undefined ? "" : `${hex8(token)}\n`}`;
}

export function mountedError(key: string, holder: string): ConfigError {
  return new ConfigError(`the disk looks mounted elsewhere (${key}: ${holder}); use --force if it is not, or --reset-mounted-flag`);
}
