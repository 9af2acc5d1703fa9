/**
 * The reading side of the FUSE session: reader threads fill slots of one shared buffer pool with
 * requests, the main thread handles them and frees the slots. At most `slots` requests are in
 * flight; the kernel queues the rest.
 */
import { runtime } from "../runtime/index.ts";
import { MIN_READ_BUFFER, Size } from "./kernel-abi.ts";

export interface ReaderSetup {
  fd: number;
  pool: SharedArrayBuffer;
  slotState: SharedArrayBuffer;
  generation: SharedArrayBuffer;
  slotSize: number;
  firstSlot: number;
  slotCount: number;
  index: number;
}

export interface DeviceReaderEvents {
  /** A request is in `bytes`; call `release()` once it has been answered and its bytes are no longer used. */
  request(bytes: Uint8Array, release: () => void): void;
  /** The device stopped delivering: "ENODEV" after unmount, else the error. Called once. */
  end(reason: string): void;
}

export class DeviceReaders {
  private readonly workers: Worker[] = [];
  private readonly state: Int32Array;
  private readonly generation: Int32Array;
  private ended = false;

  constructor(fd: number, maxWrite: number, readers: number, slotsPerReader: number, events: DeviceReaderEvents) {
    const slotSize = Math.max(MIN_READ_BUFFER, maxWrite + Size.IN_HEADER + Size.WRITE_IN + 4096);
    const slots = readers * slotsPerReader;
    const pool = new SharedArrayBuffer(slotSize * slots);
    const slotState = new SharedArrayBuffer(4 * slots);
    const generation = new SharedArrayBuffer(4 * readers);
    this.state = new Int32Array(slotState);
    this.generation = new Int32Array(generation);

    for (let index = 0; index < readers; index++) {
      const worker = runtime.startWorker("fuse/device-reader.worker.ts");
      worker.onerror = (e) => this.finish(`reader thread failed: ${e.message}`, events);
      worker.onmessage = (e: MessageEvent<{ slot?: number; length?: number; end?: string }>) => {
        const { slot, length, end } = e.data;
        if (end !== undefined) return this.finish(end, events);
        const release = () => this.release(slot!, index);
        events.request(new Uint8Array(pool, slot! * slotSize, length!), release);
      };
      const setup: ReaderSetup = { fd, pool, slotState, generation, slotSize, firstSlot: index * slotsPerReader, slotCount: slotsPerReader, index };
      worker.postMessage(setup);
      this.workers.push(worker);
    }
  }

  private release(slot: number, reader: number): void {
    Atomics.store(this.state, slot, 0);
    Atomics.add(this.generation, reader, 1);
    Atomics.notify(this.generation, reader);
  }

  private finish(reason: string, events: DeviceReaderEvents): void {
    if (this.ended) return;
    this.ended = true;
    events.end(reason);
  }

  /** Stops the threads (they may be blocked in read; terminating them is safe once the device is gone). */
  stop(): void {
    for (const w of this.workers) w.terminate();
  }
}
