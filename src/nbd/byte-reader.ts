/** How a reader holds back its source: paused while it holds `limit` bytes nobody is waiting for. */
export interface Flow {
  limit: number;
  pause(): void;
  resume(): void;
}

/**
 * The bytes a socket has delivered, taken in the sizes a protocol asks for. Chunks are kept as they
 * came; a take within one chunk is a view of it (no copy), a take across chunks is copied once: a
 * take that waits is filled as its chunks come, so that they need not be kept until the last.
 * With a `Flow`, the source is paused while the reader holds its limit of bytes nobody is waiting
 * for, and resumed once takes bring it below: what a peer sends ahead waits in the kernel, not here.
 */
interface Waiting {
  length: number;
  resolve: (b: Uint8Array) => void;
  reject: (e: Error) => void;
  /** Where its bytes go once it spans chunks, and how many are there. */
  into: Uint8Array | undefined;
  filled: number;
  alloc: Alloc | undefined;
}

/** Memory for a take that spans chunks (`length` bytes); a new array when none is given. */
export type Alloc = (length: number) => Uint8Array;

export class ByteReader {
  private readonly chunks: Uint8Array[] = [];
  private paused = false;
  /** Offset into chunks[0]. */
  private head = 0;
  private buffered = 0;
  private waiting: Waiting | undefined;
  private ended: Error | undefined;
  /** holdUntil calls not yet settled: the source stays paused meanwhile. */
  private holds = 0;

  constructor(private readonly flow?: Flow) {}

  /** Bytes delivered and not yet taken. */
  get held(): number {
    return this.buffered;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    const w = this.waiting;
    if (w?.into) {
      // Filling a take: nothing else is held meanwhile.
      const n = Math.min(chunk.length, w.length - w.filled);
      w.into.set(chunk.subarray(0, n), w.filled);
      w.filled += n;
      if (n < chunk.length) this.keep(chunk.subarray(n));
      if (w.filled === w.length) {
        this.waiting = undefined;
        w.resolve(w.into);
      }
    } else {
      this.keep(chunk);
      if (w && this.buffered >= w.length) {
        this.waiting = undefined;
        w.resolve(this.takeNow(w.length)!);
      } else if (w) this.fill(w);
    }
    this.regulate();
  }

  private keep(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** The take waiting spans chunks: its bytes go to their place from now on, starting with those held. */
  private fill(w: Waiting): void {
    w.into = w.alloc ? w.alloc(w.length) : new Uint8Array(w.length);
    w.filled = this.buffered;
    w.into.set(this.takeNow(this.buffered)!);
  }

  /** Pauses or resumes the source as the bytes held and the take waiting call for. */
  private regulate(): void {
    if (!this.flow) return;
    // A take waiting for more than is here needs the bytes, whatever the limit.
    const full = this.holds > 0 || (this.buffered >= this.flow.limit && !(this.waiting && this.buffered < this.waiting.length));
    if (full === this.paused) return;
    this.paused = full;
    if (full) this.flow.pause();
    else this.flow.resume();
  }

  /** Keeps the source paused until `until` settles, whatever is held (a take that needs more waits till then). */
  async holdUntil(until: Promise<unknown>): Promise<void> {
    this.holds++;
    this.regulate();
    try {
      await until;
    } finally {
      this.holds--;
      this.regulate();
    }
  }

  /**
   * No more bytes will come: a pending take fails, and so does every later one that cannot be met;
   * with `discard`, every later one (what is held is dropped).
   */
  end(reason: Error, discard = false): void {
    this.ended = reason;
    if (discard) {
      this.chunks.length = 0;
      this.head = 0;
      this.buffered = 0;
    }
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(reason);
  }

  /** `length` bytes if they are here, else undefined. */
  takeNow(length: number, alloc?: Alloc): Uint8Array | undefined {
    if (this.buffered < length) return undefined;
    this.buffered -= length;
    const first = this.chunks[0];
    if (length === 0 || !first) return new Uint8Array(0);
    if (first.length - this.head >= length) {
      const out = first.subarray(this.head, this.head + length);
      this.head += length;
      if (this.head === first.length) this.dropFirst();
      this.regulate();
      return out;
    }
    const out = alloc ? alloc(length) : new Uint8Array(length);
    let at = 0;
    while (at < length) {
      const c = this.chunks[0]!;
      const n = Math.min(c.length - this.head, length - at);
      out.set(c.subarray(this.head, this.head + n), at);
      at += n;
      this.head += n;
      if (this.head === c.length) this.dropFirst();
    }
    this.regulate();
    return out;
  }

  take(length: number, alloc?: Alloc): Promise<Uint8Array> {
    const now = this.takeNow(length, alloc);
    if (now) return Promise.resolve(now);
    if (this.ended) return Promise.reject(this.ended);
    if (this.waiting) return Promise.reject(new Error("one take at a time"));
    const taken = new Promise<Uint8Array>((resolve, reject) => (this.waiting = { length, resolve, reject, into: undefined, filled: 0, alloc }));
    if (this.buffered > 0) this.fill(this.waiting!);
    this.regulate();
    return taken;
  }

  /** Discards `length` bytes as they arrive (a payload too big to keep). */
  async skip(length: number): Promise<void> {
    let left = length;
    while (left > 0) {
      const n = Math.min(left, Math.max(1, this.buffered), 1 << 20);
      await this.take(n);
      left -= n;
    }
  }

  private dropFirst(): void {
    this.chunks.shift();
    this.head = 0;
  }
}
