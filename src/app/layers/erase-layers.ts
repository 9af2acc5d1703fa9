/**
 * --erase of a disk on S3, as layers see it: refused while other disks read through it; a layered
 * disk loses every layer of its own (data and zero markers), then its manifest, then its record
 * in its base (which may then be written again). A plain disk is left to the caller's erase.
 */
import type { Config } from "../../config/settings.ts";
import { ConfigError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import { DiskRecords } from "../../object/layers/disk-records.ts";
import { S3MountFlag } from "../../object/s3/mount-flag.ts";
import { S3Store } from "../../object/s3/s3-store.ts";
import { ZERO_WRITES_IN_FLIGHT } from "../../store/block-store.ts";
import { MAX_BLOCKS } from "../../config/geometry.ts";
import { s3Client } from "../open-objects.ts";
import { S3KeyObject } from "../../object/s3/key-object.ts";
import { Progress } from "../progress.ts";
import { locate } from "./chain.ts";
import { refuseIfBase } from "./command-disk.ts";

/** "plain": the caller erases the disk's blocks as it always has; "done": a layered disk, erased here. */
export async function eraseLayers(config: Config, log: Logger, confirm: (question: string) => Promise<void>): Promise<"plain" | "done"> {
  const client = s3Client(config, log);
  try {
    const records = new DiskRecords(client, log);
    const located = await locate(records, config.prefix);
    const name = records.name(located.disk);
    if (located.snapshot !== undefined) throw new ConfigError(`${name}@${located.snapshot} is a snapshot: --erase erases whole disks`);
    await refuseIfBase(records, located.disk, "--erase", false);
    const found = located.found;
    if (!found) return "plain";
    const m = found.manifest;
    const holder = await new S3MountFlag(client, located.disk).holder();
    if (holder && !config.force) throw new ConfigError(`the disk looks mounted (${holder}): unmount it first, or add --force`);
    // Its own layers: the live one, and those of its snapshots; a base's are not its to erase.
    const own = [...new Set([m.live, ...[...m.chain, ...m.snapshots.flatMap((s) => s.levels)].filter((l) => l.disk === located.disk).map((l) => l.layer)])];
    const stores = own.map((layer) => new S3Store(client, { prefix: layer, hashPrefix: m.hashPrefix, blockSize: m.blockSize, numBlocks: MAX_BLOCKS, putHeaders: {}, listThreads: config.s3.listBlocksThreads }));
    const objects: [S3Store, number][] = [];
    const listing = new Progress("listing objects", undefined, config.quiet);
    for (const store of stores) {
      await store.list((block) => {
        objects.push([store, block]);
        listing.add();
      });
    }
    listing.finish();
    if (!config.force) await confirm(`Erase ${name}: ${objects.length} objects in ${own.length} layers, its manifest and its snapshots? Type 'yes' to go on: `);
    const progress = new Progress("erasing", objects.length, config.quiet);
    let next = 0;
    const worker = async () => {
      while (next < objects.length) {
        const [store, block] = objects[next++]!;
        await store.delete(block);
        progress.add();
      }
    };
    await Promise.all(Array.from({ length: Math.min(ZERO_WRITES_IN_FLIGHT, objects.length) }, worker));
    progress.finish();
    await records.deleteManifest(located.disk);
    if (m.base) await records.removeDependent(m.base.disk, located.disk);
    await new S3MountFlag(client, located.disk).clear();
    // Last: until every block is gone, the blocks left still need their key.
    const keyObject = new S3KeyObject(client, config.bucket, located.disk);
    const keyed = (await keyObject.read()) !== undefined;
    if (keyed) await keyObject.delete();
    if (!config.quiet) process.stderr.write(`s3backer: erased ${name}: ${objects.length} objects in ${own.length} layers${keyed ? " and its key object" : ""}\n`);
    return "done";
  } finally {
    client.close();
  }
}
