/**
 * Object names of blocks, as the original s3backer writes them:
 * `<prefix>[<hash>-]<block number as 8 lower-case hex digits>`.
 */

const HEX8 = /^[0-9a-f]{8}$/;

/** The original's `--blockHashPrefix` hash: a cheap integer mix of the block number, mod 2^32. */
export function blockHash(block: number): number {
  let h = block >>> 0;
  for (let n = 12; n > 0; n--) h = (Math.imul((h >>> 8) ^ h, 0x6b) + n) >>> 0;
  return h;
}

export function hex8(value: number): string {
  return (value >>> 0).toString(16).padStart(8, "0");
}

export function blockName(block: number, hashPrefix: boolean): string {
  return hashPrefix ? `${hex8(blockHash(block))}-${hex8(block)}` : hex8(block);
}

/** The block number a name stands for, or undefined if it is not a block name (or its hash is wrong). */
export function parseBlockName(name: string, hashPrefix: boolean): number | undefined {
  const hexPart = hashPrefix ? name.slice(9) : name;
  if (hashPrefix && name[8] !== "-") return undefined;
  if (!HEX8.test(hexPart)) return undefined;
  const block = parseInt(hexPart, 16);
  if (hashPrefix && name.slice(0, 8) !== hex8(blockHash(block))) return undefined;
  return block;
}
