/**
 * Progress of long work (listing, erasing, flushing): a line redrawn in place on a terminal, a
 * line every few seconds otherwise, nothing with --quiet.
 */
export class Progress {
  private readonly tty = process.stderr.isTTY === true;
  private readonly started = performance.now();
  private lastLine = -Infinity; // the first step shows at once
  private done = 0;

  constructor(
    private readonly what: string,
    private readonly total: number | undefined,
    private readonly quiet: boolean,
  ) {}

  add(n = 1): void {
    this.done += n;
    const now = performance.now();
    if (this.quiet || now - this.lastLine < (this.tty ? 200 : 5000)) return;
    this.lastLine = now;
    this.print(false);
  }

  finish(): void {
    if (!this.quiet && (this.tty || performance.now() - this.started > 5000)) this.print(true);
  }

  private print(final: boolean): void {
    const seconds = (performance.now() - this.started) / 1000;
    const rate = this.done / Math.max(seconds, 0.001);
    let text = `${this.what}: ${this.done}${this.total ? `/${this.total}` : ""} (${rate.toFixed(0)}/s`;
    if (this.total && !final && rate > 0) text += `, ${Math.ceil((this.total - this.done) / rate)} s left`;
    text += ")";
    process.stderr.write(this.tty ? `\r\x1b[K${text}${final ? "\n" : ""}` : `${text}\n`);
  }
}
