/**
 * Builds the store stack a configuration asks for, bottom first. Later layers (S3, consistency
 * guard, zero-block cache, codec, block cache) are stacked here as they arrive.
 */
import type { Config } from "../config.ts";
import { MEMORY_BUCKET } from "../config.ts";
import type { BlockStore } from "./block-store.ts";
import { LocalDirStore } from "./backend/local-dir.ts";
import { MemoryStore } from "./backend/memory.ts";

export async function buildStack(config: Config): Promise<BlockStore> {
  if (config.bucket === MEMORY_BUCKET) return new MemoryStore(config.blockSize, config.numBlocks);
  return LocalDirStore.open({
    dir: config.bucket,
    prefix: config.prefix,
    blockSize: config.blockSize,
    numBlocks: config.numBlocks,
    hashPrefix: config.blockHashPrefix,
  });
}
