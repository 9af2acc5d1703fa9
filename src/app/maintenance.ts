/** --erase and --reset-mounted-flag: work on a disk without mounting it. */
import { createInterface } from "node:readline/promises";
import type { Config } from "../config/settings.ts";
import { ConfigError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { Progress } from "./progress.ts";
import { ZERO_WRITES_IN_FLIGHT } from "../store/block-store.ts";
import { openDisk } from "./open-disk.ts";


export async function resetMountedFlag(config: Config, log: Logger): Promise<number> {
  const disk = await openDisk(config, log);
  const holder = await disk.flag!.holder();
  await disk.flag!.clear();
  process.stderr.write(holder ? `s3backer: cleared the mounted flag (was: ${holder})\n` : "s3backer: the mounted flag was not set\n");
  return 0;
}

export async function erase(config: Config, log: Logger): Promise<number> {
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
  await disk.backend.close();
  if (!config.quiet) process.stderr.write(`s3backer: erased ${blocks.length} blocks of ${where}\n`);
  return 0;
}

async function confirm(question: string): Promise<void> {
  if (!process.stdin.isTTY) throw new ConfigError("--erase asks for confirmation on a terminal: add --force to erase without asking");
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  const answer = await rl.question(question);
  rl.close();
  if (answer.trim().toLowerCase() !== "yes") throw new ConfigError("erase cancelled");
}
