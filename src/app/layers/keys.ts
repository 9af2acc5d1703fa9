/**
 * Encryption keys of a layered disk: each disk's blocks are encrypted with its own key, and a
 * base's blocks are read with the base's. A disk's key is its wrapped data key if it has a key
 * object under its prefix (--keyWrap, docs/design/keys.md), else the original's, derived from
 * the password with the salt "<bucket>/<prefix>", so a disk's own objects are exactly what the
 * original would write under its prefix. One password opens the whole chain.
 */
import type { Config } from "../../config/settings.ts";
import { S3KeyObject } from "../../object/s3/key-object.ts";
import type { S3Client } from "../../object/s3/s3-client.ts";
import type { BlockEncryption } from "../../store/codec/block-encryption.ts";
import { existingKey } from "../disk-key.ts";

export type KeyOf = (disk: string) => Promise<BlockEncryption>;

/** The key of each disk of the bucket, found once (the KDFs are slow on purpose). */
export function keyRing(config: Config, client: S3Client): KeyOf {
  const keys = new Map<string, Promise<BlockEncryption>>();
  return (disk) => {
    const enc = config.codec.encryption;
    if (!enc?.password) throw new Error("no encryption password");
    let key = keys.get(disk);
    if (!key) keys.set(disk, (key = existingKey(enc, new S3KeyObject(client, config.bucket, disk), `${config.bucket}/${disk}`)));
    return key;
  };
}

/** The first disk among `disks` whose key is wrapped (it has a key object), if any. */
export async function wrappedAmong(config: Config, client: S3Client, disks: string[]): Promise<string | undefined> {
  for (const disk of disks) if (await new S3KeyObject(client, config.bucket, disk).read()) return disk;
  return undefined;
}
