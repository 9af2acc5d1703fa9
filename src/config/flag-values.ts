/**
 * The flags given, read through their rules: an on/off flag takes no value, the others need one,
 * numbers are whole and within their range (RANGES: the one place each numeric flag's bounds are
 * written), sizes take suffixes. A refusal names the flag as the user typed it (`-o
 * blockCacheSize=abc`, `conf:3: --blockCacheSize=abc`); what upstream accepts but ignores or clamps
 * is accepted with a warning, collected here for the caller to show.
 */
import { ConfigError, UsageError } from "../errors.ts";
import type { Given } from "../cli/parse.ts";
import { flagDefault } from "../cli/flags.ts";
import { formatSize, parseSize } from "../util/size.ts";
import { MAX_KEY_LENGTH } from "../store/codec/ciphers.ts";
import { MAX_AGE_DELAYS } from "../store/block-cache/write-back-queue.ts";
import { MAX_BLOCKS, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE } from "./geometry.ts";

/** The runtimes' timers wait at most 2^31-1 ms (24.8 days): a longer one would fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

type Range = readonly [min: number, max: number];
/** A number of blocks: never more than a disk has. */
const BLOCKS: Range = [0, MAX_BLOCKS];
const MILLIS: Range = [0, MAX_TIMER_MS];
const BYTES: Range = [0, Number.MAX_SAFE_INTEGER];
/** Transfers at once: more than this is a typo, not a setting. */
const TRANSFERS: Range = [0, 1000];

/** Every numeric flag's range; the meaning of 0 where it has one is in the flag table's help. */
const RANGES: Readonly<Record<string, Range>> = {
  blockSize: [MIN_BLOCK_SIZE, MAX_BLOCK_SIZE],
  size: [1, Number.MAX_SAFE_INTEGER],
  blockCacheMemory: BYTES,
  maxUploadSpeed: BYTES,
  maxDownloadSpeed: BYTES,
  listBlocksThreads: TRANSFERS,
  blockCacheThreads: TRANSFERS,
  blockCacheSize: BLOCKS,
  blockCacheMaxDirty: BLOCKS,
  blockCacheNumProtected: BLOCKS,
  readAhead: BLOCKS,
  readAheadTrigger: BLOCKS,
  md5CacheSize: BLOCKS,
  blockCacheTimeout: MILLIS,
  // A block kept dirty is written back within MAX_AGE_DELAYS delays: that wait must fit a timer.
  blockCacheWriteDelay: [0, Math.floor(MAX_TIMER_MS / MAX_AGE_DELAYS)],
  md5CacheTime: MILLIS,
  minWriteDelay: MILLIS,
  initialRetryPause: MILLIS,
  maxRetryPause: MILLIS,
  statsFileMirrorInterval: MILLIS,
  timeout: [0, Math.floor(MAX_TIMER_MS / 1000)],
  unmountTimeout: [0, Math.floor(MAX_TIMER_MS / 1000)],
  keyLength: [0, MAX_KEY_LENGTH],
  "scrub-rate": BYTES,
  "scrub-threads": [1, TRANSFERS[1]],
};

export class FlagValues {
  readonly warnings: string[] = [];

  constructor(private readonly given: ReadonlyMap<string, Given>) {}

  has(name: string): boolean {
    return this.given.has(name);
  }

  /** The flag as the user typed it, and where (`conf:3: --size=1G`), to start a message; `--name` when not given. */
  typed(name: string): string {
    const g = this.given.get(name);
    return g ? (g.origin ? `${g.origin}: ${g.typed}` : g.typed) : `--${name}`;
  }

  /** The flag as typed without where: for a second flag named in a message. */
  form(name: string): string {
    return this.given.get(name)?.typed ?? `--${name}`;
  }

  /** Every flag given, as typed and where. */
  typedAll(): Record<string, string> {
    return Object.fromEntries([...this.given.keys()].map((name) => [name, this.typed(name)]));
  }

  /** Which of two given flags came later: the larger number (the last one given wins). */
  order(name: string): number {
    return [...this.given.keys()].indexOf(name);
  }

  raw(name: string): string | true | undefined {
    return this.given.get(name)?.value;
  }

  on(name: string): boolean {
    const v = this.raw(name);
    if (v === undefined) return false;
    if (v === true) return true;
    throw new UsageError(`${this.typed(name)}: takes no value`);
  }

  text(name: string): string | undefined {
    const v = this.raw(name);
    if (v === true) throw new UsageError(`${this.typed(name)}: needs a value`);
    return v;
  }

  /** A refusal of the flag's value, naming it as typed. */
  fail(name: string, why: string): ConfigError {
    return new ConfigError(`${this.typed(name)}: ${why}`);
  }

  warn(message: string): void {
    this.warnings.push(message);
  }

  /** A whole number within the flag's range; the flag table's default when not given. */
  count(name: string): number {
    const [min, max] = RANGES[name]!;
    const v = this.text(name);
    if (v === undefined) return Number(flagDefault(name));
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max) throw this.fail(name, `expected a whole number from ${min} to ${max}`);
    return n;
  }

  /** A size flag's default from the flag table. */
  sizeDefault(name: string): number {
    return parseSize(flagDefault(name))!;
  }

  /** A size in bytes (or bits, for speeds): plain or suffixed (`4096`, `4k`, `1M`), within the flag's range. */
  size(name: string): number | undefined {
    const [min, max] = RANGES[name]!;
    const v = this.text(name);
    if (v === undefined) return undefined;
    const n = parseSize(v);
    if (n === undefined) throw this.fail(name, "not a size (examples: 4096, 4k, 1M, 10G, 1T)");
    if (n < min || n > max) {
      throw this.fail(name, max < Number.MAX_SAFE_INTEGER ? `must be from ${formatSize(min)} to ${formatSize(max)}` : "must be greater than zero");
    }
    return n;
  }
}
