/**
 * Which key a disk's blocks are encrypted with. A disk with a key object (made with --keyWrap)
 * has a random data key, wrapped by its password; any other encrypted disk has the original's key,
 * derived from the password, bucket and prefix. The key object is looked for whether or not
 * --encrypt was given, so that a disk with a wrapped key and no blocks yet is not mounted in the
 * clear; --keyWrap itself only matters where a new key object is to be made. In a chain of layers
 * each disk has its own key (one data key for two disks would encrypt two contents of a block
 * number under one IV): a base's key object is read for the base's blocks (app/layers/keys.ts).
 */
import type { EncryptionSettings } from "../config/settings.ts";
import { ConfigError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { KeyObjectStore } from "../object/key-object.ts";
import { BlockEncryption } from "../store/codec/block-encryption.ts";
import { KeyObjectError, newDataKey, unwrapKey, WrongPassword, wrapKey, type DataKey } from "../store/codec/wrapped-key.ts";

export interface KeySource {
  /** A block stored by this disk itself (not one of a base it reads through), if any. */
  anyOwnBlock: () => Promise<number | undefined>;
  /** Undefined where there is none (--test). */
  keyObject: KeyObjectStore | undefined;
  /** The original's salt: "<bucket>/<prefix>". */
  salt: string;
  /** Whether a missing key object may be made (a mount that writes, with --keyWrap). */
  mayCreate: boolean;
  /** A base this disk reads through whose key is wrapped (a new clone of it gets a wrapped key too). */
  wrappedBase?: string;
  log: Logger;
}

/** The block encryption to use, or undefined for a disk in the clear; a ConfigError says why not. */
export async function openEncryption(enc: EncryptionSettings | undefined, s: KeySource): Promise<BlockEncryption | undefined> {
  const found = await s.keyObject?.read();
  if (!enc) {
    if (found) throw new ConfigError(`the disk is encrypted (its key is in ${s.keyObject!.where}): give --encrypt and its password`);
    return undefined;
  }
  if (found) return keyFrom(enc, found.body, s.keyObject!.where);
  const block = await s.anyOwnBlock();
  // A clone of a disk with a wrapped key gets one of its own, so that passwd works on each disk.
  const wrap = enc.keyWrap || (s.wrappedBase !== undefined && block === undefined && s.mayCreate);
  if (!wrap) return BlockEncryption.create(enc.cipher, enc.password!, s.salt, enc.keyLength);
  if (!s.keyObject) throw new ConfigError("--keyWrap: no key object can be kept here (S3 only)");
  if (block !== undefined) {
    throw new ConfigError(`--keyWrap: the disk already has blocks (block ${block}) but no key object: its blocks are in the original's format, so mount it without --keyWrap`);
  }
  if (!s.mayCreate) throw new ConfigError(`--keyWrap: the disk has no key object yet (${s.keyObject.where}), and this run does not make one`);
  if (!enc.keyWrap) s.log.info(`the base ${s.wrappedBase} keeps its key wrapped, so this clone gets a wrapped key of its own (as with --keyWrap)`);
  return BlockEncryption.fromKey(enc.cipher, (await createKey(enc, s.keyObject, s.log)).key);
}

/**
 * The key of a disk that is read, not made (a clone's base): its wrapped data key if it has a key
 * object, else the original's, derived from the password and `salt`.
 */
export async function existingKey(enc: EncryptionSettings, keyObject: KeyObjectStore, salt: string): Promise<BlockEncryption> {
  const found = await keyObject.read();
  return found ? keyFrom(enc, found.body, keyObject.where) : BlockEncryption.create(enc.cipher, enc.password!, salt, enc.keyLength);
}

async function keyFrom(enc: EncryptionSettings, body: Uint8Array, where: string): Promise<BlockEncryption> {
  return BlockEncryption.fromKey(enc.cipher, dataKeyFor(enc, await unwrap(body, enc.password!, where)).key);
}

/**
 * A new random data key, stored wrapped. If another mount made one at the same moment, the first
 * stored is the disk's, and ours is dropped (no block was written with it yet).
 */
async function createKey(enc: EncryptionSettings, keyObject: KeyObjectStore, log: Logger): Promise<DataKey> {
  const key = newDataKey(enc.cipher, enc.keyLength);
  const body = await wrapKey(key, enc.password!);
  const created = await keyObject.create(body);
  for (const warning of keyObject.warnings.splice(0)) log.warn(warning);
  // Read back: a server that ignores If-None-Match stores the last of two at once, and that one counts.
  const stored = await keyObject.read();
  if (!stored) throw new ConfigError(`${keyObject.where}: the key object just stored is not there`);
  if (created && Buffer.from(stored.body).equals(Buffer.from(body))) {
    log.info(`made a random data key for ${enc.cipher.name}, wrapped by the password in ${keyObject.where}`);
    return key;
  }
  log.info(`another mount made the disk's key object at the same moment (${keyObject.where}): using that one`);
  return dataKeyFor(enc, await unwrap(stored.body, enc.password!, keyObject.where));
}

/** The data key in a key object; one line for a wrong password or a damaged object. */
export async function unwrap(body: Uint8Array, password: string, where: string): Promise<DataKey> {
  try {
    return await unwrapKey(body, password);
  } catch (err) {
    if (err instanceof WrongPassword) throw new ConfigError(`wrong password for the disk's key (${where}), or the key object was changed`);
    if (err instanceof KeyObjectError) throw new ConfigError(`${where}: ${err.message}: the disk's key cannot be read`);
    throw err;
  }
}

/** The key, if it is for the cipher and key length the flags ask for. */
function dataKeyFor(enc: EncryptionSettings, key: DataKey): DataKey {
  if (key.cipher.name !== enc.cipher.name || key.key.length !== enc.keyLength) {
    const keyLength = key.key.length === key.cipher.keyLength ? "" : ` --keyLength=${key.key.length}`;
    throw new ConfigError(`the disk's key is for ${key.cipher.name} with a ${key.key.length}-byte key: give --encrypt=${key.cipher.name}${keyLength}`);
  }
  return key;
}
