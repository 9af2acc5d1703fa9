/**
 * `s3backer flatten bucket/disk`: a clone becomes a disk of its own, in the original s3backer's
 * layout, which its 1.x and 2.x mount as any other. Refused while other disks read through it
 * (dropping its zero markers would show them its base's bytes). Holding the disk's mounted flag:
 *
 * 1. every block the disk reads from a base is copied into its own prefix: server-side
 *    (CopyObject: no data through the client), many at a time, with progress; block 0 with the
 *    disk's own sizes. Encrypted blocks of another disk are read, decrypted with that disk's key
 *    and encrypted with this one's (the key is bound to the disk's name, and nothing on the server
 *    can change it). None of this changes what the disk reads.
 * 2. the manifest, rewritten without the chain (one conditional PUT): the commit. From here the
 *    base is not read any more, and zero markers only mean zeros.
 * 3. the base's dependents record is removed, then the markers, then the manifest: the disk is
 *    plain. A crash after 2 leaves a manifest without a chain; running flatten again finishes.
 */
import type { Config } from "../../config/settings.ts";
import type { Logger } from "../../log.ts";
import { ConfigError } from "../../errors.ts";
import type { ObjectStore } from "../../object/object-store.ts";
import { S3MountFlag } from "../../object/s3/mount-flag.ts";
import type { S3Store } from "../../object/s3/s3-store.ts";
import { META_FILESIZE } from "../../object/s3/s3-store.ts";
import { Codec } from "../../store/codec/codec.ts";
import { Progress } from "../progress.ts";
import { levelsOf, checkLevels } from "./chain.ts";
import { holdingFlag, openCommandDisk, withPassword, type CommandDisk } from "./command-disk.ts";
import { keyRing, type KeyOf } from "./keys.ts";
import { MAX_BLOCKS } from "../../config/geometry.ts";
import { homeOf, levelStore, listLevels, type Geometry, type ListedLevel } from "./level-listing.ts";
import { refName } from "./clone.ts";
import { blockName } from "../../object/block-names.ts";

/** Copies in flight at once. */
const PARALLEL = 32;

export async function flattenCommand(config: Config, log: Logger): Promise<number> {
  const cd = await openCommandDisk(config, log);
  const { located } = cd;
  if (located.snapshot !== undefined) throw new ConfigError(`${cd.name}@${located.snapshot} is a snapshot: clone it, then flatten the clone`);
  if (!located.found) {
    const hashPrefix = config.blockHashPrefix;
    const any = await levelStore(cd, located.disk, { blockSize: 4096, size: 4096 * MAX_BLOCKS, hashPrefix }).anyBlock();
    if (any === undefined) throw new ConfigError(`there is no disk at ${cd.name}${hashPrefix ? "" : " (if its blocks are named with a hash, add --blockHashPrefix)"}`);
    throw new ConfigError(`${cd.name} has no base: it is a plain disk already (the original's layout)`);
  }
  const holder = await new S3MountFlag(cd.client, located.disk).holder();
  if (holder) throw new ConfigError(`${cd.name} is mounted (${holder}): flatten needs it unmounted`);
  withPassword(cd.config);
  const message = await holdingFlag(cd, () => flatten(cd), { what: "flatten", liveOnly: false });
  process.stderr.write(`s3backer: ${message}\n`);
  return 0;
}

async function flatten(cd: CommandDisk): Promise<string> {
  const { records, located, config } = cd;
  const disk = located.disk;
  const found = await records.manifest(disk);
  if (!found) throw new ConfigError(`${cd.name} has no base: it is a plain disk already`);
  const m = found.manifest;
  if (m.snapshots.length > 0) {
    throw new ConfigError(`${cd.name} has snapshots (${m.snapshots.map((s) => s.name).join(", ")}), which a plain disk cannot keep: clone the disk (--base=${cd.name}) and flatten the clone`);
  }
  if (m.live !== disk) throw new ConfigError(`${cd.name} writes to ${m.live}, not its own prefix: it cannot be made plain in place`);
  const g: Geometry = { blockSize: m.blockSize, size: m.size, hashPrefix: m.hashPrefix };
  const keyOf = keyRing(config, cd.client);
  const levels = await listLevels(cd, levelsOf(m, disk, undefined).levels, g);
  let copied = { server: 0, reencrypted: 0 };
  if (m.chain.length > 0) {
    await checkLevels(levels, config, keyOf, records);
    copied = await copyInherited(cd, levels, g, keyOf);
    await fixBlock0(cd, levels, g, keyOf);
    await records.replaceManifest(disk, { ...m, chain: [] }, found.etag);
  }
  if (m.base) await records.removeDependent(m.base.disk, disk);
  const live = levels[0]!;
  const markers: number[] = [];
  for (let b = 0; b < g.size / g.blockSize; b++) if (live.map.state(b) === "marker") markers.push(b);
  await Promise.all(markers.map((b) => live.store.delete(b)));
  await records.deleteManifest(disk);
  const from = m.base ? ` (was a clone of ${refName(records, m.base)})` : "";
  return `${cd.name} is flat${from}: ${copied.server} blocks copied on the server, ${copied.reencrypted} re-encrypted through this host, ${markers.length} zero markers removed`;
}

/** Copies every block whose home is below the live layer into it, PARALLEL at a time. */
async function copyInherited(cd: CommandDisk, levels: ListedLevel[], g: Geometry, keyOf: KeyOf) {
  const live = levels[0]!;
  const todo: { block: number; from: ListedLevel }[] = [];
  for (let b = 0; b < g.size / g.blockSize; b++) {
    const home = homeOf(levels, b);
    if (home > 0 && levels[home]!.map.state(b) === "data") todo.push({ block: b, from: levels[home]! });
  }
  const encrypted = cd.config.codec.encryption !== undefined;
  const own = encrypted ? await codecFor(cd, live.store, cd.located.disk, keyOf) : undefined;
  const codecs = new Map<string, Promise<Codec>>();
  const progress = new Progress("copying inherited blocks", todo.length, cd.config.quiet);
  const counts = { server: 0, reencrypted: 0 };
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const { block, from } = todo[next++]!;
      if (!encrypted || from.disk === cd.located.disk) {
        await live.store.copy(block, from.store);
        counts.server++;
      } else {
        // Another disk's key: only this host can turn it into this disk's.
        let codec = codecs.get(from.disk);
        if (!codec) codecs.set(from.disk, (codec = codecFor(cd, from.store, from.disk, keyOf)));
        const object = await from.store.get(block);
        if (!object) throw new ConfigError(`block ${block} vanished from ${from.layer} while being copied: a base must not change`);
        const data = await (await codec).decode(block, object);
        await live.store.put(block, await own!.encode(block, data));
        counts.reencrypted++;
      }
      progress.add();
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, todo.length) }, worker));
  progress.finish();
  return counts;
}

async function codecFor(cd: CommandDisk, store: ObjectStore, disk: string, keyOf: KeyOf): Promise<Codec> {
  const c = cd.config.codec;
  return new Codec(store, { compression: c.compression, encryption: c.encryption ? await keyOf(disk) : undefined, defaultEncoding: c.defaultEncoding, keepSizes: true });
}

/**
 * Block 0 must carry the disk's own sizes (the original reads them there): one copied from a base
 * got them with the copy; one of the disk's own with another size is stored again; none at all
 * (zeros everywhere) is stored, encoded as the flags say.
 */
async function fixBlock0(cd: CommandDisk, levels: ListedLevel[], g: Geometry, keyOf: KeyOf): Promise<void> {
  const live = levels[0]!.store as S3Store;
  const home = homeOf(levels, 0);
  if (home > 0 && levels[home]!.map.state(0) === "data") return; // copied with the disk's sizes
  if (home === 0 && levels[0]!.map.state(0) === "data") {
    const head = await cd.client.send({ method: "HEAD", kind: "HEAD", key: live.prefix + blockName(0, g.hashPrefix), expect: [200] });
    if (head.headers.get(META_FILESIZE) === String(g.size)) return;
    const block0 = (await live.get(0))!;
    await live.put(0, { body: block0.body, encoding: block0.encoding ?? undefined, hmac: block0.hmac ?? undefined, md5: block0.md5 });
    return;
  }
  const codec = await codecFor(cd, live, cd.located.disk, keyOf);
  await live.put(0, await codec.encode(0, new Uint8Array(g.blockSize)));
}
