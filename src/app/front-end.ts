/**
 * What the life of a mount (serve.ts) needs of a front end, FUSE or NBD: it starts over the opened
 * disk, says when it is serving, stops on a signal, and says how it ended.
 */
import type { Config } from "../config/settings.ts";
import type { Disk } from "./open-disk.ts";

export interface FrontEnd {
  /** Resolves true once clients can use the disk, false if it ended before that. */
  readonly ready: Promise<boolean>;
  /** Resolves once nothing more will reach the disk: true if it ended as asked, false on an error. */
  readonly ended: Promise<boolean>;
  /** The log line once ready. */
  readyMessage(): string;
  /** A signal asked to stop: unmount, or stop serving. */
  stop(signal: string): void;
  /** The disk grew (s3backer resize): clients are told where the front end can tell them. */
  resized?(): Promise<void>;
}

export interface FrontEndContext {
  config: Config;
  disk: Disk;
  /** The stats text at this moment, and its reset. */
  statsText(): string;
  resetStats(): void;
}
