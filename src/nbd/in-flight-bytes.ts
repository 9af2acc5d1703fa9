/**
 * The bytes of NBD requests in flight (write payloads held until stored, read replies to come),
 * shared by a server's connections: a request waits, first come first served, while it would take
 * the total past the limit (one larger than the limit goes alone). Clients then cannot make the
 * server hold more than this whatever they send: the rest waits in their sockets.
 */
export class InFlightBytes {
  private used = 0;
  private readonly waiting: { bytes: number; resolve: () => void }[] = [];

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

  private fits(bytes: number): boolean {
    return this.used === 0 || this.used + bytes <= this.limit;
  }
}
