/**
 * A thread that blocks in read(2) on /dev/fuse and hands each request to the main thread.
 *
 * Why a thread: async reads of the device park the runtime's I/O threads in the kernel and starve
 * every other file operation of the process (measured: docs/fuse-notes in shared notes). Each reader
 * owns some slots of a shared buffer pool; a slot holds one request until the main thread has
 * replied and marks it free again. No request is copied or reallocated on the way.
 */
import { runtime } from "../runtime/index.ts";
import type { ReaderSetup } from "./device-readers.ts";

declare const self: Worker;

self.onmessage = (event: MessageEvent<ReaderSetup>) => {
  const { fd, pool, slotState, generation, slotSize, firstSlot, slotCount, index } = event.data;
  const state = new Int32Array(slotState);
  const gen = new Int32Array(generation);
  let next = 0;

  const takeSlot = (): number => {
    for (;;) {
      const seen = Atomics.load(gen, index);
      for (let i = 0; i < slotCount; i++) {
        const slot = firstSlot + ((next + i) % slotCount);
        if (Atomics.compareExchange(state, slot, 0, 1) === 0) {
          next = (next + i + 1) % slotCount;
          return slot;
        }
      }
      // Every slot is busy: sleep until the main thread frees one (it bumps our generation).
      Atomics.wait(gen, index, seen);
    }
  };

  for (;;) {
    const slot = takeSlot();
    const buffer = new Uint8Array(pool, slot * slotSize, slotSize);
    let length: number;
    try {
      length = runtime.readSync(fd, buffer);
    } catch (err) {
      Atomics.store(state, slot, 0);
      const code = (err as { code?: string }).code;
      // ENOENT: the request was interrupted before we got it; EINTR/EAGAIN: try again.
      if (code === "ENOENT" || code === "EINTR" || code === "EAGAIN") continue;
      self.postMessage({ end: code ?? String(err) });
      return;
    }
    self.postMessage({ slot, length });
  }
};
