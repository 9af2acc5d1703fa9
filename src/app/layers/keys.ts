/**
 * Encryption keys of a layered disk: each disk's blocks are encrypted with the key its own name
 * gives (salt "<bucket>/<prefix>", as the original derives it), so a disk's own objects are
 * exactly what the original would write under its prefix, and a base's blocks are read with the
 * base's key. One password for the whole chain.
 */
import type { Config } from "../../config/settings.ts";
import { BlockEncryption } from "../../store/codec/block-encryption.ts";

export type KeyOf = (disk: string) => Promise<BlockEncryption>;

/** The key of each disk of the bucket, derived once (PBKDF2 is slow on purpose). */
export function keyRing(config: Config): KeyOf {
  const keys = new Map<string, Promise<BlockEncryption>>();
  return (disk) => {
    const enc = config.codec.encryption;
    if (!enc?.password) throw new Error("no encryption password");
    let key = keys.get(disk);
    if (!key) keys.set(disk, (key = BlockEncryption.create(enc.cipher, enc.password, `${config.bucket}/${disk}`, enc.keyLength)));
    return key;
  };
}
