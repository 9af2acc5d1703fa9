/**
 * MD5 for uploads, four at a time. Write-back sends many blocks of one size at once, so a request
 * for a digest waits a moment (WAIT_MS, nothing next to an upload's round trip) for others of the
 * same length and they are hashed together in SIMD lanes (md5x4.ts): half the CPU per block of the
 * runtime's MD5, which on a busy machine is the upload path's largest cost. Fewer than three
 * waiting are hashed one by one, natively (two lanes cost what two native hashes do).
 */
import { createHash } from "node:crypto";
import { md5x4, md5x4Available } from "./md5x4.ts";

const WAIT_MS = 5;
const LANES = 4;
/** Below this many side by side, the native hash is as fast. */
const WORTH_LANES = 3;

interface Waiting {
  data: Uint8Array;
  resolve(digest: Uint8Array): void;
}

const md5Native = (data: Uint8Array): Uint8Array => createHash("md5").update(data).digest();

export class Md5Batch {
  private readonly waiting = new Map<number, Waiting[]>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly lanes = md5x4Available();

  /** The MD5 of `data`, which must not change until the promise settles. */
  digest(data: Uint8Array): Promise<Uint8Array> {
    if (!this.lanes) return Promise.resolve(md5Native(data));
    return new Promise((resolve) => {
      const group = this.waiting.get(data.length) ?? [];
      group.push({ data, resolve });
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
    if (group.length >= WORTH_LANES) {
      const digests = md5x4(group.map((w) => w.data));
      group.forEach((w, i) => w.resolve(digests[i]!));
    } else {
      for (const w of group) w.resolve(md5Native(w.data));
    }
  }
}
