/**
 * A thread that blocks in read(2) on /dev/fuse and hands each request to the main thread.
 *
 * Why a thread: async reads of the device park the runtime's I/O threads in the kernel and starve
 * every other file operation of the process (measured: docs/fuse-notes in shared notes). Each reader
 * owns some slots of a shared buffer pool; a slot holds one request until the main thread has
 * replied and marks it free again. No request is copied or reallocated on the way: the slot number
 * goes into this reader's ring (see device-readers.ts).
 */
import { runtime } from "../runtime/index.ts";
import { PARK, POSTED, readerWakeWord, SLOT_BUSY, SLOT_FREE, type ReaderSetup } from "./device-readers.ts";

declare const self: Worker;

self.onmessage = (event: MessageEvent<ReaderSetup>) => {
  const { fd, pool, slotSize, firstSlot, slotCount, index } = event.data;
  const state = new Int32Array(event.data.slotState);
  const lengths = new Int32Array(event.data.lengths);
  const rings = new Int32Array(event.data.rings);
  const producedCount = new Int32Array(event.data.produced);
  const signals = new Int32Array(event.data.signals);
  const wakeWord = readerWakeWord(index);
  let produced = 0;

  const takeSlot = (): number => {
    for (;;) {
      const seen = Atomics.load(signals, wakeWord);
      // The lowest free slot: slots a burst of large writes never needed stay untouched (not resident).
      for (let slot = firstSlot; slot < firstSlot + slotCount; slot++) {
        if (Atomics.compareExchange(state, slot, SLOT_FREE, SLOT_BUSY) === SLOT_FREE) return slot;
      }
      // Every slot is busy: sleep until the main thread frees one (it bumps our wake-up word).
      Atomics.wait(signals, wakeWord, seen);
    }
  };

  for (;;) {
    // While the main thread reads the device itself, stay out of its way (see device-readers.ts).
    while (Atomics.load(signals, PARK) === 1) Atomics.wait(signals, PARK, 1);
    const slot = takeSlot();
    let length: number;
    try {
      length = runtime.readSync(fd, new Uint8Array(pool, slot * slotSize, slotSize));
    } catch (err) {
      Atomics.store(state, slot, SLOT_FREE);
      const code = (err as { code?: string }).code;
      // ENOENT: the request was interrupted before we got it; EINTR/EAGAIN: try again.
      if (code === "ENOENT" || code === "EINTR" || code === "EAGAIN") continue;
      self.postMessage({ end: code ?? String(err) });
      return;
    }
    // A slot in the ring is busy until released, so the ring (one entry per slot) never overflows.
    lengths[slot] = length;
    rings[index * slotCount + (produced % slotCount)] = slot;
    produced++;
    Atomics.store(producedCount, index, produced);
    Atomics.add(signals, POSTED, 1);
    Atomics.notify(signals, POSTED);
  }
};

self.postMessage({ ready: true });
