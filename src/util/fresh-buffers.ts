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
  private failed = false;
  /** Asked for and not arrived yet. */
  pending = 0;

  /** Buffers of `size` bytes, zeros, each handed to `arrived`. */
  constructor(
    private readonly size: number,
    private readonly arrived: (buffer: Uint8Array) => void,
  ) {}

  /** Asks for `count` more (the thread starts with the first ask); none come once it failed. */
  ask(count: number): void {
    if (this.failed) return;
    this.worker ??= this.start();
    this.pending += count;
    if (this.listening) this.worker.postMessage({ count, size: this.size });
    else this.unsent += count;
  }

  close(): void {
    this.worker?.terminate();
    this.worker = undefined;
    this.failed = true;
    this.pending = 0;
  }

  private start(): Worker {
    const worker = runtime.startWorker("util/fresh-buffers.worker.ts");
    // The thread must not keep the process alive (the mount's end decides that).
    (worker as Worker & { unref?: () => void }).unref?.();
    worker.onmessage = (e: MessageEvent<Uint8Array | { ready: true }>) => {
      if (e.data instanceof Uint8Array) {
        this.pending--;
        return this.arrived(e.data);
      }
      // Asks sent before the thread listened could be lost (its imports load first).
      this.listening = true;
      if (this.unsent > 0) worker.postMessage({ count: this.unsent, size: this.size });
      this.unsent = 0;
    };
    // Without the thread, buffers are faulted in where they are used, as without it.
    worker.onerror = () => this.close();
    return worker;
  }
}
