/** Block size, file size and block count: their limits, and how flags and a disk's metadata settle them. */
import { ConfigError } from "../errors.ts";
import { flagDefault } from "../cli/flags.ts";
import { formatSize, parseSize } from "../util/size.ts";
import type { Geometry } from "./settings.ts";

export const MIN_BLOCK_SIZE = 512;

/** Upstream's limit: its block size is an unsigned int, and a power of two. */
export const MAX_BLOCK_SIZE = 2 ** 31;

/** Above this, a block size gets a warning: each block in flight or cached holds that much memory. */
export const LARGE_BLOCK_SIZE = 64 * 2 ** 20;

/** Block names are 8 hex digits, as in the original. */
export const MAX_BLOCKS = 2 ** 32;

export const DEFAULT_BLOCK_SIZE = parseSize(flagDefault("blockSize"))!;

export function checkBlockSize(blockSize: number, what: string): void {
  if (blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) {
    throw new ConfigError(`${what}: must be a power of two from ${formatSize(MIN_BLOCK_SIZE)} to ${formatSize(MAX_BLOCK_SIZE)}`);
  }
}

/**
 * The disk's block and file size: from the flags, else from what the disk's metadata says.
 * Flags that disagree with the metadata are refused unless --force.
 */
export function resolveGeometry(
  flags: { blockSize: number | undefined; fileSize: number | undefined },
  detected: { blockSize: number; fileSize: number } | undefined,
  force: boolean,
): Geometry {
  if (detected) {
    checkBlockSize(detected.blockSize, "the disk's metadata block size");
    for (const [name, mine, theirs] of [["--blockSize", flags.blockSize, detected.blockSize], ["--size", flags.fileSize, detected.fileSize]] as const) {
      if (mine !== undefined && mine !== theirs && !force) {
        throw new ConfigError(`${name}=${formatSize(mine)} differs from the disk's own ${formatSize(theirs)}; use --force to override (and risk misreading the disk)`);
      }
    }
  }
  const blockSize = flags.blockSize ?? detected?.blockSize ?? DEFAULT_BLOCK_SIZE;
  const fileSize = flags.fileSize ?? detected?.fileSize;
  if (fileSize === undefined) throw new ConfigError("--size is required: no existing disk was found to take it from");
  if (fileSize % blockSize !== 0) {
    throw new ConfigError(`--size=${formatSize(fileSize)} is not a multiple of the block size (${formatSize(blockSize)})`);
  }
  const numBlocks = fileSize / blockSize;
  if (numBlocks > MAX_BLOCKS) {
    throw new ConfigError(
      `--size=${formatSize(fileSize)} needs ${numBlocks} blocks of ${formatSize(blockSize)}; at most ${MAX_BLOCKS} fit the block names: use a larger --blockSize`,
    );
  }
  return { blockSize, fileSize, numBlocks };
}
