/** The byte range of a file cut into runs of blocks that do or do not read as zeros. */

export interface Extent {
  length: number;
  /** Known to read as zeros (the block is absent); false means it may hold data. */
  zero: boolean;
}

/**
 * Extents covering [offset, offset+length) (clipped to the file), at most `max` of them: the last
 * one may then end before the range does. Blocks are what `knownZero` knows about.
 */
export function zeroExtents(
  offset: number,
  length: number,
  fileSize: number,
  blockSize: number,
  knownZero: (block: number) => boolean,
  max: number,
): Extent[] {
  const end = Math.min(fileSize, offset + length);
  const extents: Extent[] = [];
  let at = offset;
  while (at < end) {
    const block = Math.floor(at / blockSize);
    const next = Math.min(end, (block + 1) * blockSize);
    const zero = knownZero(block);
    const last = extents[extents.length - 1];
    if (last && last.zero === zero) last.length += next - at;
    else {
      if (extents.length === max) break;
      extents.push({ length: next - at, zero });
    }
    at = next;
  }
  return extents;
}
