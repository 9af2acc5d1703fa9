/**
 * The reading side of the FUSE session: reader threads fill slots of one shared buffer pool with
 * requests, the main thread handles them and frees the slots. At most `slots` requests are in
 * flight; the kernel queues the rest.
 *
 * Hand-off: each reader appends the slots it filled to its own ring in shared memory (so its
 * requests keep their order) and bumps a shared counter. Waking an idle event loop costs about
 * 40 us (postMessage and Atomics.waitAsync alike), which would cap 4 KiB I/O near 22k requests/s;
 * so while requests keep coming the main thread polls the rings on every turn of its event loop
 * (setImmediate), and only after POLL_IDLE_MS without one does it sleep in Atomics.waitAsync.
 */
import { setImmediate } from "node:timers";
import { runtime } from "../runtime/index.ts";
import { MIN_READ_BUFFER, Size } from "./kernel-abi.ts";

/** How long the main thread keeps polling after the last request before it sleeps. */
const POLL_IDLE_MS = 0.2;
/** How long one turn of polling waits for a request when none is there. */
const SPIN_MS = 0.02;

/** Slot states in `slotState`: free, or owned by its reader (being read into, or holding a request not yet answered). */
export const SLOT_FREE = 0;
export const SLOT_BUSY = 1;

export interface ReaderSetup {
  fd: number;
  pool: SharedArrayBuffer;
  slotState: SharedArrayBuffer;
  /** Per slot: the length of the request in it. */
  lengths: SharedArrayBuffer;
  /** Per reader: a ring of `slotCount` slot numbers, in the order the requests were read. */
  rings: SharedArrayBuffer;
  /** Per reader: how many requests it has put in its ring so far. */
  produced: SharedArrayBuffer;
  /** [0]: requests posted by all readers (the main thread waits on it); [1 + i]: reader i's wake-up word. */
  signals: SharedArrayBuffer;
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
  private readonly lengths: Int32Array;
  private readonly rings: Int32Array;
  private readonly produced: Int32Array;
  /** Per reader: how many requests of its ring were handed on (main thread only). */
  private readonly consumed: number[];
  private readonly signals: Int32Array;
  private readonly views: Uint8Array[] = [];
  private readonly releases: (() => void)[] = [];
  private lastRequest = 0;
  private ended = false;

  constructor(
    fd: number,
    maxWrite: number,
    private readonly readers: number,
    private readonly slotsPerReader: number,
    private readonly events: DeviceReaderEvents,
  ) {
    const slotSize = Math.max(MIN_READ_BUFFER, maxWrite + Size.IN_HEADER + Size.WRITE_IN + 4096);
    const slots = readers * slotsPerReader;
    const shared = (words: number) => new SharedArrayBuffer(4 * words);
    const setup = {
      fd, pool: new SharedArrayBuffer(slotSize * slots), slotState: shared(slots), lengths: shared(slots),
      rings: shared(slots), produced: shared(readers), signals: shared(1 + readers), slotSize,
    };
    this.state = new Int32Array(setup.slotState);
    this.lengths = new Int32Array(setup.lengths);
    this.rings = new Int32Array(setup.rings);
    this.produced = new Int32Array(setup.produced);
    this.consumed = new Array<number>(readers).fill(0);
    this.signals = new Int32Array(setup.signals);
    for (let slot = 0; slot < slots; slot++) {
      this.views.push(new Uint8Array(setup.pool, slot * slotSize, slotSize));
      const reader = Math.floor(slot / slotsPerReader);
      this.releases.push(() => this.release(slot, reader));
    }

    for (let index = 0; index < readers; index++) {
      const worker = runtime.startWorker("fuse/device-reader.worker.ts");
      worker.onerror = (e) => this.finish(`reader thread failed: ${e.message}`);
      worker.onmessage = (e: MessageEvent<{ end: string }>) => {
        this.drain(); // requests read before the end still get their answer
        this.finish(e.data.end);
      };
      const readerSetup: ReaderSetup = { ...setup, firstSlot: index * slotsPerReader, slotCount: slotsPerReader, index };
      worker.postMessage(readerSetup);
      this.workers.push(worker);
    }
    this.poll();
  }

  /** Hands every request waiting in the rings to the session; true if there was any. */
  private drain(): boolean {
    let any = false;
    for (let r = 0; r < this.readers; r++) {
      const produced = Atomics.load(this.produced, r);
      while (this.consumed[r] !== produced) {
        const slot = this.rings[r * this.slotsPerReader + (this.consumed[r]! % this.slotsPerReader)]!;
        this.consumed[r]!++;
        any = true;
        this.events.request(this.views[slot]!.subarray(0, this.lengths[slot]!), this.releases[slot]!);
      }
    }
    return any;
  }

  private readonly poll = (): void => {
    if (this.ended) return;
    let handled = this.drain();
    if (!handled) {
      // Wait a little in this turn (a spin: a sleep would cost the wake-up this avoids), so that
      // polling makes one turn of the event loop per SPIN_MS at most when nothing comes.
      const seen = Atomics.load(this.signals, 0);
      const until = performance.now() + SPIN_MS;
      while (Atomics.load(this.signals, 0) === seen && performance.now() < until);
      handled = this.drain();
    }
    if (handled) this.lastRequest = performance.now();
    if (performance.now() - this.lastRequest < POLL_IDLE_MS) {
      setImmediate(this.poll);
      return;
    }
    // Idle: sleep until a reader posts again.
    const posted = Atomics.load(this.signals, 0);
    if (this.drain()) {
      this.lastRequest = performance.now();
      setImmediate(this.poll);
      return;
    }
    const wait = Atomics.waitAsync(this.signals, 0, posted);
    if (!wait.async) setImmediate(this.poll);
    else
      void wait.value.then(() => {
        this.lastRequest = performance.now();
        this.poll();
      });
  };

  private release(slot: number, reader: number): void {
    Atomics.store(this.state, slot, SLOT_FREE);
    Atomics.add(this.signals, 1 + reader, 1);
    Atomics.notify(this.signals, 1 + reader);
  }

  private finish(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.events.end(reason);
  }

  /** Stops the threads (they may be blocked in read; terminating them is safe once the device is gone). */
  stop(): void {
    this.ended = true;
    Atomics.add(this.signals, 0, 1);
    Atomics.notify(this.signals, 0); // ends a pending waitAsync
    for (const w of this.workers) w.terminate();
  }
}
