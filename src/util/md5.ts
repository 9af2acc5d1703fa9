/**
 * MD5 without holding up the main thread. The main thread also answers the kernel's FUSE
 * requests, and a 1 MiB block takes 1.5 ms to hash natively; a request that arrives meanwhile
 * waits for it, and so does the program reading the disk.
 * - md5InTurns: a body read is hashed a slice per turn of the event loop, with requests served
 *   between slices (cold sequential reads 430-470 MB/s against 400-410 in one go).
 * - Md5Batch: uploads are hashed four at a time. Write-back sends many blocks of one size at once,
 *   so a request for a digest waits a moment (WAIT_MS, nothing next to an upload's round trip) for
 *   others of the same length, and they are hashed together in SIMD lanes (md5x4.ts): half the CPU
 *   per block of the runtime's MD5. Fewer than three waiting are hashed one by one, natively and in
 *   turns (two lanes cost what two native hashes do). Where the HTTP threads run, the groups are
 *   hashed there (http-threads.ts), off the main thread.
 */
import { createHash } from "node:crypto";
import { setImmediate } from "node:timers";
import { Md5x4, md5x4Available } from "./md5x4.ts";

const SLICE = 64 * 1024;
const WAIT_MS = 5;
const LANES = 4;
/** Below this many side by side, the native hash is as fast. */
const WORTH_LANES = 3;

interface Waiting {
  data: Uint8Array;
  resolve(digest: Uint8Array): void;
  reject(err: unknown): void;
}

/** The MD5 of `data` at once, in base64 (a Content-MD5 header's form). */
export function md5Base64(data: Uint8Array): string {
  return createHash("md5").update(data).digest("base64");
}

/** The MD5 of `data` at once, as lowercase hex (an ETag's form). */
export function md5Hex(data: Uint8Array): string {
  return createHash("md5").update(data).digest("hex");
}

/** The MD5 of `data` (which must not change meanwhile), hashed SLICE bytes per turn of the event loop. */
export async function md5InTurns(data: Uint8Array): Promise<Uint8Array> {
  const hash = createHash("md5");
  for (let at = 0; at < data.length; at += SLICE) {
    if (at > 0) await new Promise((resolve) => setImmediate(resolve));
    hash.update(data.subarray(at, at + SLICE));
  }
  return hash.digest();
}

/** How a group of inputs of one length is hashed: their digests, in order. */
export type GroupHasher = (inputs: Uint8Array[]) => Promise<Uint8Array[]>;

/**
 * Hashes a group here: side by side in SIMD lanes when there are enough of them, a window of each
 * per turn of the event loop (see md5InTurns); else one by one, natively and in turns.
 */
export function hashGroupHere(inputs: Uint8Array[]): Promise<Uint8Array[]> {
  if (inputs.length < WORTH_LANES || !md5x4Available()) return Promise.all(inputs.map((data) => md5InTurns(data)));
  const run = new Md5x4(inputs);
  return new Promise((resolve) => {
    const next = () => {
      if (!run.step()) return setImmediate(next);
      resolve(run.digests());
    };
    next();
  });
}

export class Md5Batch {
  private readonly waiting = new Map<number, Waiting[]>();
  private timer: ReturnType<typeof setTimeout> | undefined;

  /** Groups are hashed by `hashGroup`: here by default, or on another thread. */
  constructor(private readonly hashGroup: GroupHasher = hashGroupHere) {}

  /** The MD5 of `data`, which must not change until the promise settles. */
  digest(data: Uint8Array): Promise<Uint8Array> {
    if (this.hashGroup === hashGroupHere && !md5x4Available()) return md5InTurns(data);
    return new Promise((resolve, reject) => {
      const group = this.waiting.get(data.length) ?? [];
      group.push({ data, resolve, reject });
      if (group.length === LANES) {
        this.waiting.delete(data.length);
        this.hash(group);
        return;
      }
      this.waiting.set(data.length, group);
      this.timer ??= setTimeout(() => this.drain(), WAIT_MS);
    });
  }

  private drain(): void {
    this.timer = undefined;
    const groups = [...this.waiting.values()];
    this.waiting.clear();
    for (const group of groups) this.hash(group);
  }

  private hash(group: Waiting[]): void {
    this.hashGroup(group.map((w) => w.data)).then(
      (digests) => group.forEach((w, i) => w.resolve(digests[i]!)),
      (err) => group.forEach((w) => w.reject(err)),
    );
  }
}
