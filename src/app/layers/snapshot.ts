/**
 * `s3backer snapshot bucket/disk bucket/disk@NAME`: the disk's present state becomes the read-only
 * snapshot NAME, and the disk goes on in a new, empty layer above it; no block is copied. A mount
 * of the disk on this host takes it itself (mounted-ops.ts); otherwise the command does, holding
 * the disk's mounted flag, with one conditional PUT of the manifest.
 */
import type { Config } from "../../config/settings.ts";
import type { Logger } from "../../log.ts";
import { ConfigError, UsageError } from "../../errors.ts";
import { checkSnapshotName, plainManifest, withSnapshot } from "../../object/layers/manifest.ts";
import { geometryOf, holdingFlag, openCommandDisk, throughMount } from "./command-disk.ts";


export async function snapshotCommand(config: Config, log: Logger): Promise<number> {
  const cd = await openCommandDisk(config, log);
  const { located, records } = cd;
  if (located.snapshot !== undefined) throw new ConfigError(`${cd.name}@${located.snapshot} is a snapshot: snapshot the disk itself`);
  const typed = cd.rest[0]!;
  const at = typed.lastIndexOf("@");
  if (at < 0 || typed.slice(0, at).replace(/\/+$/, "") !== cd.name) throw new UsageError(`the snapshot is named ${cd.name}@NAME, not '${typed}'`);
  const name = typed.slice(at + 1);
  checkSnapshotName(name, typed);
  if (located.found?.manifest.snapshots.some((s) => s.name === name)) throw new ConfigError(`${cd.name} already has a snapshot named '${name}'`);

  const plain = located.found ? undefined : await geometryOf(cd); // no disk: said before anything is done
  const byMount = await throughMount(cd, { op: "snapshot", name }, "a snapshot");
  const message =
    byMount ??
    (await holdingFlag(cd, async () => {
      const found = await records.manifest(located.disk);
      const { blockSize, size, hashPrefix } = found ? found.manifest : (plain ?? (await geometryOf(cd)));
      const m = found?.manifest ?? plainManifest(located.disk, blockSize, size, hashPrefix);
      const next = withSnapshot(m, located.disk, name, new Date().toISOString());
      await records.checkNewLayer(located.disk, next.live);
      await records.replaceManifest(located.disk, next, found?.etag ?? "");
      return `${cd.name}@${name}: snapshot taken; writes now go to ${next.live}`;
    }));
  process.stderr.write(`s3backer: ${message}\n`);
  return 0;
}
