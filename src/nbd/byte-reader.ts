/**
 * The bytes a socket has delivered, taken in the sizes a protocol asks for. Chunks are kept as they
 * came; a take within one chunk is a view of it (no copy), a take across chunks is copied once.
 */
export class ByteReader {
  private readonly chunks: Uint8Array[] = [];
  /** Offset into chunks[0]. */
  private head = 0;
  private buffered = 0;
  private waiting: { length: number; resolve: (b: Uint8Array) => void; reject: (e: Error) => void } | undefined;
  private ended: Error | undefined;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const w = this.waiting;
    if (w && this.buffered >= w.length) {
      this.waiting = undefined;
      w.resolve(this.takeNow(w.length)!);
    }
  }

  /** No more bytes will come: a pending take fails, and so does every later one that cannot be met. */
  end(reason: Error): void {
    this.ended = reason;
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(reason);
  }

  /** `length` bytes if they are here, else undefined. */
  takeNow(length: number): Uint8Array | undefined {
    if (this.buffered < length) return undefined;
    this.buffered -= length;
    const first = this.chunks[0];
    if (length === 0 || !first) return new Uint8Array(0);
    if (first.length - this.head >= length) {
      const out = first.subarray(this.head, this.head + length);
      this.head += length;
      if (this.head === first.length) this.dropFirst();
      return out;
    }
    const out = new Uint8Array(length);
    let at = 0;
    while (at < length) {
      const c = this.chunks[0]!;
      const n = Math.min(c.length - this.head, length - at);
      out.set(c.subarray(this.head, this.head + n), at);
      at += n;
      this.head += n;
      if (this.head === c.length) this.dropFirst();
    }
    return out;
  }

  take(length: number): Promise<Uint8Array> {
    const now = this.takeNow(length);
    if (now) return Promise.resolve(now);
    if (this.ended) return Promise.reject(this.ended);
    if (this.waiting) return Promise.reject(new Error("one take at a time"));
    return new Promise((resolve, reject) => (this.waiting = { length, resolve, reject }));
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
