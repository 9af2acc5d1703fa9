/**
 * A thread that faults in block buffers for the main thread (see fresh-buffers.ts): each is made
 * here, written once per page, and handed over (transferred, not copied).
 */

declare const self: Worker;

/** The smallest page: writing one byte in each faults in all of them, whatever their size. */
const PAGE = 4096;

self.onmessage = (event: MessageEvent<{ count: number; size: number }>) => {
  const { count, size } = event.data;
  for (let i = 0; i < count; i++) {
    const buffer = new Uint8Array(size);
    for (let at = 0; at < size; at += PAGE) buffer[at] = 0;
    self.postMessage(buffer, [buffer.buffer]);
  }
};
self.postMessage({ ready: true });
