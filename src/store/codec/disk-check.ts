/**
 * Checks at start-up what would otherwise fail on every read: an encrypted disk mounted without
 * --encrypt (or a plain one with it), another cipher, or a wrong password. One stored block is
 * enough to tell: block 0, or the first block a listing finds (the original deletes a zero block 0).
 */
import { ConfigError } from "../../errors.ts";
import type { ObjectStore, StoredObject } from "../../object/object-store.ts";
import type { Codec } from "./codec.ts";
import { cipherOfLayer, parseEncoding } from "./content-encoding.ts";

export async function checkDiskEncoding(objects: ObjectStore, codec: Codec, encrypting: boolean, defaultEncoding: string | undefined): Promise<void> {
  // Only an encrypted disk's signature needs a body; otherwise the headers tell (a HEAD).
  const look = (block: number) => (encrypting ? objects.get(block) : objects.head(block));
  let block = 0;
  let object = await look(0);
  if (!object) {
    const first = await objects.anyBlock();
    if (first === undefined) return; // an empty disk: anything goes
    block = first;
    object = await look(first);
    if (!object) return;
  }
  const encoding = object.encoding ?? defaultEncoding;
  const cipher = parseEncoding(encoding).map(cipherOfLayer).find((c) => c !== undefined);
  if (cipher && !encrypting) {
    throw new ConfigError(`the disk is encrypted (block ${block} is '${encoding}'): mount it with --encrypt and its password`);
  }
  if (!cipher && encrypting) {
    throw new ConfigError(`--encrypt was given but the disk is not encrypted (block ${block} is stored in the clear); refusing to mix encrypted and plain blocks`);
  }
  if (cipher) {
    try {
      await codec.decode(block, object as StoredObject); // encrypting: look() fetched the body
    } catch (err) {
      throw new ConfigError(`cannot mount: ${(err as Error).message}`);
    }
  }
}
