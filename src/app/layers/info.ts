/**
 * `s3backer info bucket/disk[@NAME]`: what a disk is made of, without mounting it: its geometry,
 * how its blocks are encoded, whether it is mounted, its chain of layers (each with its blocks,
 * zero markers and bytes stored), its snapshots, and the disks that read through it.
 */
import type { Config } from "../../config/settings.ts";
import type { Logger } from "../../log.ts";
import { blockName } from "../../object/block-names.ts";
import { S3MountFlag } from "../../object/s3/mount-flag.ts";
import { S3KeyObject } from "../../object/s3/key-object.ts";
import { cipherOfLayer, parseEncoding } from "../../store/codec/content-encoding.ts";
import { formatSize } from "../../util/size.ts";
import { levelsOf } from "./chain.ts";
import { refName } from "./clone.ts";
import { geometryOf, openCommandDisk } from "./command-disk.ts";
import { listLevels } from "./level-listing.ts";


export async function infoCommand(config: Config, log: Logger): Promise<number> {
  const cd = await openCommandDisk(config, log);
  const { located, records } = cd;
  const m = located.found?.manifest;
  const g = await geometryOf(cd);
  const chain = m ? levelsOf(m, located.disk, located.snapshot) : { levels: [{ layer: located.disk, disk: located.disk, blocks: g.size / g.blockSize }], size: g.size };
  const size = chain.size;
  const lines: [string, string][] = [];
  lines.push(["disk", `${cd.name}${located.snapshot === undefined ? "" : `@${located.snapshot} (a snapshot: read-only)`}`]);
  lines.push(["size", `${formatSize(size)} (${size} bytes): ${size / g.blockSize} blocks of ${formatSize(g.blockSize)}${g.hashPrefix ? ", names with hash prefix" : ""}`]);
  const listed = await listLevels(cd, chain.levels, { ...g, size: Math.max(size, g.size) });
  const sample = listed.find((l) => l.map.found > 0);
  const encoding = sample && (await cd.client.send({ method: "HEAD", kind: "HEAD", key: sample.layer + blockName(firstData(sample.map), g.hashPrefix), expect: [200, 404] })).headers.get("content-encoding");
  lines.push(["encoding", sample ? (encoding ?? "none (plain blocks)") : "no blocks stored"]);
  const keyObject = new S3KeyObject(cd.client, cd.config.bucket, located.disk);
  const encrypted = parseEncoding(encoding ?? undefined).some((layer) => cipherOfLayer(layer) !== undefined);
  if (await keyObject.read()) lines.push(["key", `a data key wrapped by the password (${keyObject.where}; 's3backer passwd' changes it)`]);
  else if (encrypted) lines.push(["key", "derived from the password, bucket and prefix (the original's)"]);
  const holder = await new S3MountFlag(cd.client, located.disk).holder();
  lines.push(["mounted", holder ?? "no"]);
  lines.push(["layout", m ? `layered (manifest ${located.disk}s3backer-layers)` : "plain: the original s3backer's layout"]);
  if (m?.base) lines.push(["base", refName(records, m.base)]);
  listed.forEach((l, i) => {
    const role = i === 0 && located.snapshot === undefined ? "live layer" : l.disk === located.disk ? "own, frozen" : `of ${records.name(l.disk)}`;
    const hidden = l.blocks < size / g.blockSize ? `, blocks past ${l.blocks} hidden` : "";
    lines.push([i === 0 ? "layers" : "", `${l.layer || "(bucket root)"} [${role}]: ${l.map.found} blocks, ${l.map.markers} zero markers, ${formatBytes(l.bytes)}${hidden}`]);
  });
  const snaps = m?.snapshots ?? [];
  lines.push(["snapshots", snaps.length ? snaps.map((s) => `${s.name} (${s.taken}, ${formatSize(s.size)}, ${s.levels.length} levels)`).join("; ") : "none"]);
  const dependents = await records.dependents(located.disk, false); // looking changes nothing: stale records stay
  lines.push(["dependents", dependents.length ? dependents.map((d) => `${records.name(d.disk)} (${d.snapshot === undefined ? "reads the live layer: this disk is frozen" : `reads @${d.snapshot}`})`).join("; ") : "none"]);
  const width = Math.max(...lines.map(([k]) => k.length)) + 2;
  process.stdout.write(lines.map(([k, v]) => `${k.padEnd(width)}${v}\n`).join(""));
  await cd.client.close();
  return 0;
}

function firstData(map: { state(b: number): string }): number {
  for (let b = 0; ; b++) if (map.state(b) === "data") return b;
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} bytes`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]} stored`;
}
