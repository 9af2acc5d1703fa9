/**
 * Block buffers faulted in ahead, on a thread of their own. Memory new to the process costs more
 * CPU to fault in than to fill: the kernel clears every page, and a VM's host may have to back it
 * first. A cache that grows by a block per write would pay that on the main thread, the one that
 * answers the kernel's requests; this thread pays it while the main thread goes on.
 */
import { runtime } from "../runtime/index.ts";

export class FreshBuffers {
  private worker: Worker | undefined;
  private listening = false;
  private unsent = 0;
  private stopped = false;
  private asked = 0;

  /** Buffers of `size` bytes, zeros, each handed to `arrived`. */
  constructor(
    private readonly size: number,
    private readonly arrived: (buffer: Uint8Array) => void,
  ) {}

  /** Asks for `count` more (the thread starts with the first ask); none come once it stopped (closed, or failed). */
  ask(count: number): void {
    if (this.stopped) return;
    this.worker ??= this.start();
    this.asked += count;
    if (this.listening) this.worker.postMessage({ count, size: this.size });
    else this.unsent += count;
  }

  close(): void {
    this.worker?.terminate();
    this.worker = undefined;
    this.stopped = true;
    this.asked = 0;
  }

  /** Asked for and not arrived yet. */
  get pending(): number {
    return this.asked;
  }

  private start(): Worker {
    const worker = runtime.startWorker("memory/fresh-buffers.worker.ts");
    // The thread must not keep the process alive (the mount's end decides that).
    (worker as Worker & { unref?: () => void }).unref?.();
    worker.onmessage = (e: MessageEvent<Uint8Array | { ready: true }>) => {
      if (e.data instanceof Uint8Array) {
        this.asked--;
        return this.arrived(e.data);
      }
      // Asks sent before the thread listened could be lost (its imports load first).
      this.listening = true;
      if (this.unsent > 0) worker.postMessage({ count: this.unsent, size: this.size });
      this.unsent = 0;
    };
    // A thread that failed is not started again: buffers are then faulted in where they are used.
    worker.onerror = () => this.close();
    return worker;
  }
}
