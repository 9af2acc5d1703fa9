/**
 * The reading side of the FUSE session: requests come in through two doors, and the main thread
 * handles them and frees their slots.
 *
 * - Reader threads block in read(2) on the device, each into its own slots of a shared buffer
 *   pool, and append the slots they filled to their own ring in shared memory (so their requests
 *   keep their order), then bump a shared counter. They serve an idle process: waking an idle event
 *   loop costs about 40 us (postMessage and Atomics.waitAsync alike).
 * - While requests keep coming, the main thread reads them itself from a non-blocking clone of the
 *   device (FUSE_DEV_IOC_CLONE) into slots of its own, and the reader threads park after the request
 *   they hold: no thread wakes up per request, which on a small machine is most of what a 4 KiB
 *   request costs. Between requests the main thread sleeps in ppoll(2) on its door, up to WAIT_US
 *   per turn of the event loop: the kernel wakes it when the next request comes, and the wait
 *   costs no CPU (a busy poll cost more than the wake-ups it saved when requests came one by one,
 *   as a program reading small files sends them). After POLL_IDLE_MS without a request the readers
 *   go back to the device and the main thread sleeps in Atomics.waitAsync until one of them posts.
 *
 * A reply goes to the descriptor its request was read from (each has its own queue of requests
 * being answered). At most `slots` requests are in flight per door; the kernel queues the rest.
 */
import { closeSync, constants, openSync } from "node:fs";
import { setImmediate } from "node:timers";
import { messageOf } from "../errors.ts";
import { runtime } from "../runtime/index.ts";
import { FUSE_DEV_IOC_CLONE, MIN_READ_BUFFER, Size } from "./kernel-abi.ts";

/** How long the main thread keeps waiting on its door after the last request before it hands the device back to the readers. */
const POLL_IDLE_MS = 5;
/**
 * How long one turn of waiting on the door may last: what else the event loop has to do (a timer,
 * an upload's answer) waits at most this long while requests are expected. While a request awaits
 * an answer from the event loop (a block being fetched, a flush) and none is queued, the main
 * thread does not wait on its door at all: that would hold the answer back, and waiting in short
 * turns kept a core busy while requests waited for a slow server (98% of a core for 850 IOPS).
 * It hands the device to the readers and sleeps in the event loop instead.
 */
const WAIT_US = 1000;
/**
 * Most requests the main thread reads in one turn of the event loop: answered at once, they could
 * keep coming for ever, and the event loop must turn for S3 transfers, write-back and timers.
 */
const MAX_PER_TURN = 32;
/**
 * Most request bytes read in one turn. While the kernel pushes large writes, 32 of them (9 MiB)
 * would hold back the answers of uploads in flight, and the next uploads with them: write-back
 * falls behind the writes it has to store, and the next flush waits for all of them.
 */
const MAX_BYTES_PER_TURN = 2 * 2 ** 20;
/**
 * While the main thread sleeps until a reader posts, it looks at the readers' count this often
 * anyway: a wake-up the runtime lost (Atomics.waitAsync's promise not settling) costs this long
 * instead of hanging every request behind it.
 */
const IDLE_CHECK_MS = 100;

/** Slot states in `slotState`: free, or owned by its reader (being read into, or holding a request not yet answered). */
export const SLOT_FREE = 0;
export const SLOT_BUSY = 1;

/** Words of `signals`: requests posted by all readers (the main thread waits on it), 1 while readers must park, then one wake-up word per reader. */
export const POSTED = 0;
export const PARK = 1;
export const readerWakeWord = (index: number) => 2 + index;

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
  /** See POSTED, PARK and readerWakeWord. */
  signals: SharedArrayBuffer;
  slotSize: number;
  firstSlot: number;
  slotCount: number;
  index: number;
}

export interface DeviceReaderEvents {
  /**
   * A request is in `bytes`; its reply goes to `replyFd`. Call `release()` once it has been
   * answered and its bytes are no longer used.
   */
  request(bytes: Uint8Array, release: () => void, replyFd: number): void;
  /** Whether a request handed on is still waiting for its answer. */
  awaiting(): boolean;
  /** The device stopped delivering: "ENODEV" after unmount, else the error. Called once. */
  end(reason: string): void;
}

/** The main thread's own door: a non-blocking clone of the device and slots to read into. */
interface DirectDoor {
  fd: number;
  views: Uint8Array[];
  free: number[];
  releases: (() => void)[];
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
  private readonly direct: DirectDoor | undefined;
  private readonly slotsPerReader: number;
  /** Why the main thread has no door of its own (it then relies on the reader threads alone). */
  readonly noDirectDoor: string | undefined;
  private lastRequest = 0;
  /** The last read of the main thread's door ended finding it empty (EAGAIN). */
  private doorEmpty = false;
  private ended = false;
  /** Bumped at each wake-up: a wait or check of an earlier sleep then does nothing. */
  private sleeps = 0;

  constructor(
    private readonly fd: number,
    maxWrite: number,
    private readonly readers: number,
    slotsPerReader: number,
    directSlots: number,
    private readonly events: DeviceReaderEvents,
  ) {
    const slotSize = Math.max(MIN_READ_BUFFER, maxWrite + Size.IN_HEADER + Size.WRITE_IN + 4096);
    if (directSlots > 0) {
      const door = openDirectDoor(fd, directSlots, slotSize);
      if (typeof door === "string") this.noDirectDoor = door;
      else this.direct = door;
    } else {
      this.noDirectDoor = "not asked for";
    }
    // Without a door of its own, the main thread gets every request through the readers: they
    // take its slots too, so that as many requests can be in flight.
    if (!this.direct) slotsPerReader += Math.ceil(directSlots / readers);
    this.slotsPerReader = slotsPerReader;
    const slots = readers * slotsPerReader;
    const shared = (words: number) => new SharedArrayBuffer(4 * words);
    const setup = {
      fd, pool: new SharedArrayBuffer(slotSize * slots), slotState: shared(slots), lengths: shared(slots),
      rings: shared(slots), produced: shared(readers), signals: shared(readerWakeWord(readers)), slotSize,
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
      const readerSetup: ReaderSetup = { ...setup, firstSlot: index * slotsPerReader, slotCount: slotsPerReader, index };
      // The setup goes once the thread says it listens: a message sent while its imports still
      // load (the runtime adapter's top-level await) could find no handler, and be lost.
      worker.onmessage = (e: MessageEvent<{ ready: true } | { end: string }>) => {
        if ("ready" in e.data) return worker.postMessage(readerSetup);
        this.drain(); // requests read before the end still get their answer
        this.finish(e.data.end);
      };
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
        this.events.request(this.views[slot]!.subarray(0, this.lengths[slot]!), this.releases[slot]!, this.fd);
      }
    }
    return any;
  }

  /** Reads and hands on what the kernel has queued, through the main thread's door; true if there was any. */
  private readDirect(): boolean {
    const door = this.direct;
    if (!door) return false;
    let any = false;
    let bytes = 0;
    this.doorEmpty = false;
    for (let taken = 0; taken < MAX_PER_TURN && bytes < MAX_BYTES_PER_TURN && door.free.length > 0 && !this.ended; taken++) {
      const slot = door.free.pop()!;
      let length: number;
      try {
        length = runtime.libc.tryRead(door.fd, door.views[slot]!);
      } catch (err) {
        door.free.push(slot);
        const code = (err as { code?: string }).code;
        if (code === "ENOENT" || code === "EINTR") continue; // interrupted before we got it: next
        this.drain();
        this.finish(code ?? String(err));
        return any;
      }
      if (length < 0) {
        door.free.push(slot);
        this.doorEmpty = true;
        break;
      }
      any = true;
      bytes += length;
      this.events.request(door.views[slot]!.subarray(0, length), door.releases[slot]!, door.fd);
    }
    return any;
  }

  private take(): boolean {
    const fromReaders = this.drain();
    return this.readDirect() || fromReaders;
  }

  private readonly poll = (): void => {
    if (this.ended) return;
    let handled = this.drain();
    // A door found empty by the last read is not read again just to hear EAGAIN: the wait below
    // returns at once if a request came since (and the idle path reads it anyway).
    if (handled || !this.doorEmpty) handled = this.readDirect() || handled;
    const awaiting = !handled && this.events.awaiting();
    if (!handled && !awaiting && this.direct && runtime.libc.waitReadable(this.direct.fd, WAIT_US)) handled = this.take();
    if (handled) this.lastRequest = performance.now();
    if (this.direct && !awaiting && performance.now() - this.lastRequest < POLL_IDLE_MS) {
      setImmediate(this.poll);
      return;
    }
    // Idle: the readers go back to the device, and this thread sleeps until one of them posts.
    this.setParked(false);
    const posted = Atomics.load(this.signals, POSTED);
    if (this.take()) {
      this.wake();
      return;
    }
    const sleep = this.sleeps;
    const resume = () => {
      if (sleep === this.sleeps) this.wake();
    };
    const wait = Atomics.waitAsync(this.signals, POSTED, posted);
    if (!wait.async) return resume();
    void wait.value.then(resume);
    const check = () => {
      if (sleep !== this.sleeps || this.ended) return;
      if (Atomics.load(this.signals, POSTED) === posted) return void setTimeout(check, IDLE_CHECK_MS).unref?.();
      resume();
    };
    setTimeout(check, IDLE_CHECK_MS).unref?.();
  };

  private readonly wake = (): void => {
    this.sleeps++;
    this.lastRequest = performance.now();
    if (this.direct) this.setParked(true);
    setImmediate(this.poll);
  };

  private setParked(parked: boolean): void {
    Atomics.store(this.signals, PARK, parked ? 1 : 0);
    if (!parked) Atomics.notify(this.signals, PARK);
  }

  private release(slot: number, reader: number): void {
    Atomics.store(this.state, slot, SLOT_FREE);
    const word = readerWakeWord(reader);
    Atomics.add(this.signals, word, 1);
    Atomics.notify(this.signals, word);
  }

  private finish(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.events.end(reason);
  }

  /** Stops the threads (they may be blocked in read; terminating them is safe once the device is gone). */
  stop(): void {
    this.ended = true;
    Atomics.add(this.signals, POSTED, 1);
    Atomics.notify(this.signals, POSTED); // ends a pending waitAsync
    for (const w of this.workers) w.terminate();
    if (this.direct) closeSync(this.direct.fd);
  }
}

/** The main thread's door, or why there is none (the kernel or the device node does not allow a clone). */
function openDirectDoor(fd: number, slots: number, slotSize: number): DirectDoor | string {
  let clone: number;
  try {
    clone = openSync("/dev/fuse", constants.O_RDWR | constants.O_NONBLOCK);
  } catch (err) {
    return `cannot open /dev/fuse: ${messageOf(err)}`;
  }
  try {
    runtime.libc.ioctl(clone, FUSE_DEV_IOC_CLONE, new Uint8Array(new Uint32Array([fd]).buffer));
  } catch (err) {
    closeSync(clone);
    return `cannot clone the FUSE descriptor: ${messageOf(err)}`;
  }
  const pool = new ArrayBuffer(slotSize * slots);
  const door: DirectDoor = { fd: clone, views: [], free: [], releases: [] };
  for (let slot = 0; slot < slots; slot++) {
    door.views.push(new Uint8Array(pool, slot * slotSize, slotSize));
    door.free.push(slot);
    door.releases.push(() => door.free.push(slot));
  }
  return door;
}
