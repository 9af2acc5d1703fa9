import { delay } from "./delay.ts";

/** Exponential backoff within a budget: pauses of initial, 2x, 4x ... ms while their total fits. */
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
    this.pause *= 2;
  }
}
