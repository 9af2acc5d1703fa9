/**
 * Block buffers on huge pages where the kernel offers them (transparent huge pages in "madvise"
 * mode, the usual Linux default). The first pass through a cache puts every block in fresh memory,
 * and faulting it in 4 KiB at a time costs more CPU than moving the bytes; one fault per huge page
 * costs a fraction of that.
 *
 * Only buffers of at least half a huge page: the allocator writes into the memory of smaller ones
 * (its own bookkeeping) before we could advise it, which leaves nothing to gain but resident size.
 */
import { runtime } from "../runtime/index.ts";

/** A transparent huge page: 2 MiB on x86-64, and on arm64 with 4 KiB pages. */
export const HUGE_PAGE = 2 ** 21;
const MADV_HUGEPAGE = 14;

/** Huge pages already advised (by number: address / HUGE_PAGE), in this thread. */
const advised = new Set<number>();

/** The huge pages a range overlaps that are not advised yet, as one run [first, last], or null. */
export function pagesToAdvise(address: number, length: number, done: ReadonlySet<number>): [number, number] | null {
  let first = Math.floor(address / HUGE_PAGE);
  let last = Math.floor((address + length - 1) / HUGE_PAGE);
  while (first <= last && done.has(first)) first++;
  while (last >= first && done.has(last)) last--;
  return first <= last ? [first, last] : null;
}

/**
 * Past a buffer, how far the advice reaches too. The allocator puts the next buffers there, and
 * other memory between them (a socket's chunks, a request's copies): whatever touches a huge page's
 * range first while it is not advised gets it in 4 KiB pages, and so do the blocks that later land
 * in the rest of it. With the advice only under each block, a third of the blocks of a cold read
 * were faulted in 4 KiB at a time.
 */
const ADVISE_AHEAD = 32 * 2 ** 20;

/**
 * Asks for huge pages under a buffer not yet written to, and ADVISE_AHEAD past it (a hint: ignored
 * where the kernel has none). The advice covers whole huge pages.
 */
export function onHugePages<T extends Uint8Array>(buffer: T): T {
  if (buffer.byteLength < HUGE_PAGE / 2) return buffer;
  const run = pagesToAdvise(runtime.libc.addressOf(buffer), buffer.byteLength + ADVISE_AHEAD, advised);
  if (!run) return buffer;
  const [first, last] = run;
  runtime.libc.madvise(first * HUGE_PAGE, (last - first + 1) * HUGE_PAGE, MADV_HUGEPAGE);
  for (let page = first; page <= last; page++) advised.add(page);
  return buffer;
}
