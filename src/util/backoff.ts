import { delay } from "./delay.ts";

/**
 * Exponential backoff within a budget: pauses of initial, 2x, 4x ... ms while their total fits. An
 * initial pause of 0 (--initialRetryPause=0) retries once at once, then from 1 ms: doubling 0 would
 * retry without a pause for ever.
 */
export class Backoff {
  private pause: number;
  /** Total paused so far. */
  paused = 0;

  constructor(initialMs: number, private readonly budgetMs: number) {
    this.pause = initialMs;
  }

  /** The next pause, in ms. */
  get nextMs(): number {
    return this.pause;
  }

  /** Whether the next pause still fits the budget. */
  canWait(): boolean {
    return this.paused + this.pause <= this.budgetMs;
  }

  async wait(): Promise<void> {
    await delay(this.pause);
    this.paused += this.pause;
    this.pause = this.pause * 2 || 1;
  }
}
