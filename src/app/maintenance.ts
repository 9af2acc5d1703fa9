/** --erase and --reset-mounted-flag: work on a disk without mounting it. */
import { createInterface } from "node:readline/promises";
import type { Config } from "../config/settings.ts";
import { ConfigError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { Progress } from "./progress.ts";
import { ZERO_WRITES_IN_FLIGHT } from "../store/block-store.ts";
import { openDisk } from "./open-disk.ts";
import { existsSync } from "node:fs";
import { CacheFile } from "../store/block-cache/cache-file.ts";
import { eraseLayers } from "./layers/erase-layers.ts";


export async function resetMountedFlag(config: Config, log: Logger): Promise<number> {
  const disk = await openDisk(config, log);
  const holder = await disk.flag!.holder();
  const token = await disk.flag!.token();
  await disk.flag!.clear();
  process.stderr.write(holder ? `s3backer: cleared the mounted flag (was: ${holder})\n` : "s3backer: the mounted flag was not set\n");
  const warning = config.cache.file ? unsavedBlocksWarning(config.cache.file, token) : holder && UNSEEN_CACHE_FILE;
  if (warning) process.stderr.write(`s3backer: warning: ${warning}\n`);
  return 0;
}

const UNSEEN_CACHE_FILE =
  "if the mount that set it had a --blockCacheFile, its blocks not yet stored are recoverable only with --force now: " +
  "give that file here to check it, or store them with --blockCacheFile=FILE --blockCacheRecoverDirtyBlocks --force before anyone else mounts the disk";

/**
 * After a crash the cache file may hold blocks never stored, recoverable only while the flag is
 * the crashed mount's: the reset says so, and how to store them now (read-only: the file is not changed).
 */
function unsavedBlocksWarning(path: string, flagToken: number | undefined): string | undefined {
  if (!existsSync(path)) return undefined;
  const found = CacheFile.inspect(path);
  if (!found) return `${path} is not a cache file: not checked for unsaved blocks`;
  if (found.dirty === 0) return undefined;
  const blocks = `${path} holds ${found.dirty} blocks written and never stored`;
  if (flagToken !== undefined && !found.tokens.includes(flagToken)) {
    return `${blocks}, older than the mount that set the flag: storing them would overwrite what that mount wrote (delete the file to drop them)`;
  }
  return `${blocks}: store them now, before anyone else mounts the disk, with --blockCacheFile=${path} --blockCacheRecoverDirtyBlocks --force (with the flag cleared, only --force recovers them)`;
}

export async function erase(config: Config, log: Logger): Promise<number> {
  // A base is kept while others read through it; a layered disk is erased layer by layer.
  if (!config.test && (await eraseLayers(config, log, confirm)) === "done") return 0;
  const disk = await openDisk(config, log);
  const holder = await disk.flag!.holder();
  if (holder && !config.force) throw new ConfigError(`the disk looks mounted (${holder}): unmount it first, or add --force`);

  const blocks: number[] = [];
  const listing = new Progress("listing blocks", undefined, config.quiet);
  await disk.backend.listBlocks((b) => {
    blocks.push(b);
    listing.add();
  });
  listing.finish();
  const where = `${config.bucket}${config.prefix ? `/${config.prefix}` : ""}`;
  if (!config.force) await confirm(`Erase all ${blocks.length} blocks of ${where}? Type 'yes' to go on: `);

  const progress = new Progress("erasing blocks", blocks.length, config.quiet);
  let next = 0;
  const worker = async () => {
    while (next < blocks.length) {
      await disk.backend.writeBlock(blocks[next++]!, null);
      progress.add();
    }
  };
  await Promise.all(Array.from({ length: ZERO_WRITES_IN_FLIGHT }, worker));
  progress.finish();
  await disk.flag!.clear();
  // Last: until every block is gone, the blocks left still need their key.
  const keyObject = disk.keyObject && (await disk.keyObject.read()) ? disk.keyObject : undefined;
  await keyObject?.delete();
  await disk.backend.close();
  if (!config.quiet) process.stderr.write(`s3backer: erased ${blocks.length} blocks of ${where}${keyObject ? " and its key object" : ""}\n`);
  return 0;
}

async function confirm(question: string): Promise<void> {
  if (!process.stdin.isTTY) throw new ConfigError("--erase asks for confirmation on a terminal: add --force to erase without asking");
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  const answer = await rl.question(question);
  rl.close();
  if (answer.trim().toLowerCase() !== "yes") throw new ConfigError("erase cancelled");
}
