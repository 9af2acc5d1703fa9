/**
 * The bytes of NBD requests in flight (write payloads held until stored, read replies to come),
 * shared by a server's connections: a request waits, first come first served, while it would take
 * the total past the limit (one larger than the limit goes alone). Clients then cannot make the
 * server hold more than this whatever they send: the rest waits in their sockets.
 *
 * It also keeps the buffers large payloads were read into, for the next ones (as many as the limit
 * holds): fresh memory for every payload left the heap fragmented, and the resident size grew in
 * steps of tens of MiB over a long stream of large writes.
 */
/** Payloads smaller than this get memory of their own (small garbage is cheap). */
const MIN_KEPT = 64 * 1024;

export class InFlightBytes {
  private used = 0;
  private readonly waiting: { bytes: number; resolve: () => void }[] = [];
  /** Kept buffers by size (a power of two), and their total. */
  private readonly spare = new Map<number, Uint8Array[]>();
  private spareBytes = 0;

  constructor(readonly limit: number) {}

  /** Counts `bytes` in: undefined when they were at once, else a promise of when. */
  acquire(bytes: number): Promise<void> | undefined {
    if (this.waiting.length === 0 && this.fits(bytes)) {
      this.used += bytes;
      return undefined;
    }
    return new Promise((resolve) => this.waiting.push({ bytes, resolve }));
  }

  release(bytes: number): void {
    this.used -= bytes;
    while (this.waiting.length > 0 && this.fits(this.waiting[0]!.bytes)) {
      const next = this.waiting.shift()!;
      this.used += next.bytes;
      next.resolve();
    }
  }

  /** Memory for a payload of `length` bytes: a view of a kept buffer when it is large. Give it back once the request is done. */
  buffer(length: number): Uint8Array {
    if (length < MIN_KEPT) return new Uint8Array(length);
    const size = 2 ** Math.ceil(Math.log2(length));
    const kept = this.spare.get(size)?.pop();
    if (kept) this.spareBytes -= size;
    return (kept ?? new Uint8Array(size)).subarray(0, length);
  }

  /** A payload `buffer` gave is no longer used by anyone. */
  giveBack(payload: Uint8Array): void {
    const size = payload.buffer.byteLength;
    if (size < MIN_KEPT || this.spareBytes + size > this.limit) return;
    const list = this.spare.get(size) ?? [];
    list.push(new Uint8Array(payload.buffer as ArrayBuffer));
    this.spare.set(size, list);
    this.spareBytes += size;
  }

  private fits(bytes: number): boolean {
    return this.used === 0 || this.used + bytes <= this.limit;
  }
}
