/**
 * The codec, directly above the object store (where the original does the same work, inside its
 * HTTP layer): turns a block into the object body and headers the original writes, and back. A
 * zero block is no object: writing one deletes it, and an absent object reads as zeros.
 *
 * Writing: all-zero blocks are deleted before anything else (so zero-block elision survives
 * encryption); with --compress the block is compressed (deflate or zstd), and kept raw if that does not shrink it;
 * with --encrypt it is then encrypted and signed. Reading: every layer the object's
 * Content-Encoding names is undone, last first, whatever the flags (so --compress can change
 * between mounts); with --encrypt an object that is not encrypted and signed is refused, and
 * without it an encrypted one is. A refused or undecodable block is EIO, never data.
 *
 * Above it the consistency guard compares the MD5 of what is stored, so the verified read and
 * write report that MD5 alongside the plain bytes.
 */
import { md5Hex } from "../../util/md5.ts";
import { DataError } from "../../errors.ts";
import type { VerifiedStore } from "../block-store.ts";
import type { StatGroup } from "../../util/stat-group.ts";
import { isAllZero, zeroBlock } from "../block-store.ts";
import { Counters } from "../../util/counters.ts";
import { readPartOf, writePartOf } from "../partial.ts";
import { ObjectRefused, type ObjectStore, type ObjectToStore, type StoredObject } from "../../object/object-store.ts";
import { AuthenticationError, SignatureMismatch, type BlockEncryption } from "./block-encryption.ts";
import { compress, decompress, isCompression, type Compression } from "./compression.ts";
import { cipherOfLayer, encryptionLayer, formatEncoding, parseEncoding } from "./content-encoding.ts";

export interface CodecOptions {
  /** How new blocks are compressed; undefined: store them uncompressed. */
  compression: Compression | undefined;
  encryption: BlockEncryption | undefined;
  /** --defaultContentEncoding: assumed when a server drops the header. */
  defaultEncoding: string | undefined;
  /** Store block 0 even when zero, to keep the disk's sizes (off for --erase). */
  keepSizes: boolean;
  /** The key of another disk, for objects a base of a layered disk holds (StoredObject.disk). */
  keyOf?: (disk: string) => Promise<BlockEncryption>;
}

export class Codec implements VerifiedStore {
  readonly blockSize: number;
  private readonly zero: Uint8Array;
  private readonly counters = new Counters(["blocks compressed", "blocks stored raw", "bytes before encoding", "bytes after encoding", "blocks decoded", "blocks refused", "bodies fetched again"] as const);

  constructor(
    private readonly inner: ObjectStore,
    private readonly o: CodecOptions,
  ) {
    this.blockSize = inner.blockSize;
    this.zero = zeroBlock(inner.blockSize);
  }

  /** The object store's: a disk may grow while in use. */
  get numBlocks(): number {
    return this.inner.numBlocks;
  }

  /** Decoding makes new bytes; a plain body is the store's own. */
  get freshReads(): boolean {
    return this.transforms || this.inner.freshBodies;
  }

  /** True when new blocks are encrypted (--encrypt). */
  get encrypts(): boolean {
    return this.o.encryption !== undefined;
  }

  /** True when blocks are transformed on the way out (so a stored ETag is not the MD5 of the data). */
  get transforms(): boolean {
    return this.o.compression !== undefined || this.o.encryption !== undefined;
  }

  async readBlock(block: number): Promise<Uint8Array> {
    return (await this.fetch(block))?.data ?? this.zero;
  }

  async readVerified(block: number): Promise<{ data: Uint8Array | null; md5: string | null }> {
    return (await this.fetch(block)) ?? { data: null, md5: null };
  }

  /**
   * A block's object, decoded (null: none). A body whose signature fails may be another block's
   * object answered by mistake, so the store is asked to fetch it again (within its retry budget);
   * only one that keeps failing is EIO. Wrong passwords are caught at mount (disk-check.ts).
   */
  private async fetch(block: number): Promise<{ data: Uint8Array; md5: string } | null> {
    let decoded: { object: StoredObject; data: Uint8Array } | undefined;
    let refused: Error | undefined;
    const accept = async (object: StoredObject) => {
      refused = undefined;
      try {
        decoded = { object, data: await this.undoWhole(block, object) };
      } catch (err) {
        if (!(err instanceof SignatureMismatch)) return; // not cured by asking again: decoded below, to EIO
        refused = err;
        this.counters.add("bodies fetched again");
        throw new ObjectRefused(`block ${block} refused: ${err.message}`);
      }
    };
    let object: StoredObject | null;
    try {
      object = await this.inner.get(block, this.o.encryption ? accept : undefined);
    } catch (err) {
      if (refused) this.counters.add("blocks refused");
      throw err;
    }
    if (!object) return null;
    const data = decoded?.object === object ? this.counted(object, decoded.data) : await this.decode(block, object);
    return { data, md5: object.md5 };
  }

  async writeBlock(block: number, data: Uint8Array | null, md5?: string): Promise<void> {
    await this.store(block, data, md5);
  }

  async writeVerified(block: number, data: Uint8Array | null, md5?: string): Promise<string | null> {
    const stored = await this.store(block, data, md5);
    return stored && (stored.md5 ?? md5Hex(stored.body));
  }

  /**
   * Stores a block (null: deletes it); returns what was put and its MD5 where it is known, or null.
   * `md5` (of `data`) is the object's too when nothing transforms the bytes.
   */
  private async store(block: number, data: Uint8Array | null, md5?: string): Promise<{ body: Uint8Array; md5: string | undefined } | null> {
    if (data && isAllZero(data)) data = null;
    // Block 0 carries the disk's sizes, so it is stored even when zero (the original deletes it
    // and with it the only record of the sizes).
    if (!data && block === 0 && this.o.keepSizes) data = this.zero;
    if (!data) {
      await this.inner.delete(block);
      return null;
    }
    const object = await this.encode(block, data);
    if (md5 !== undefined && object.body === data) object.md5 = md5;
    return { body: object.body, md5: (await this.inner.put(block, object)) ?? object.md5 };
  }

  readBlockPart(block: number, offset: number, length: number): Promise<Uint8Array> {
    return readPartOf(this, block, offset, length);
  }

  writeBlockPart(block: number, offset: number, data: Uint8Array): Promise<void> {
    return writePartOf(this, block, offset, data);
  }

  listBlocks(found: (block: number) => void): Promise<void> {
    return this.inner.list(found);
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  async storedMd5(block: number): Promise<string | null> {
    // A stored MD5 is that of the plain bytes only when nothing transformed them.
    if (!this.transforms) return (await this.inner.head(block))?.md5 ?? null;
    const { data } = await this.readVerified(block);
    return data && md5Hex(data);
  }

  async encode(block: number, data: Uint8Array): Promise<ObjectToStore> {
    const layers: string[] = [];
    let body = data;
    if (this.o.compression !== undefined) {
      const packed = await compress(data, this.o.compression);
      if (packed.length < data.length) {
        body = packed;
        layers.push(this.o.compression.algorithm);
        this.counters.add("blocks compressed");
      } else this.counters.add("blocks stored raw");
    }
    let hmac: string | undefined;
    const encryption = this.o.encryption;
    if (encryption) {
      ({ body, hmac } = await encryption.encrypt(block, body));
      layers.push(encryptionLayer(encryption.cipher.name));
    }
    this.counters.add("bytes before encoding", data.length);
    this.counters.add("bytes after encoding", body.length);
    return { body, encoding: layers.length ? formatEncoding(layers) : undefined, hmac };
  }

  /** The plain block from a stored object; EIO with the reason when it cannot be trusted or read. */
  async decode(block: number, object: StoredObject): Promise<Uint8Array> {
    try {
      return this.counted(object, await this.undoWhole(block, object));
    } catch (err) {
      this.counters.add("blocks refused");
      throw new DataError(`block ${block} refused: ${(err as Error).message}`);
    }
  }

  private counted(object: StoredObject, data: Uint8Array): Uint8Array {
    if (object.encoding || this.o.encryption) this.counters.add("blocks decoded");
    return data;
  }

  /** Every layer undone, and a whole block out; throws why not. */
  private async undoWhole(block: number, object: StoredObject): Promise<Uint8Array> {
    const data = await this.undo(block, object);
    if (data.length !== this.blockSize) throw new AuthenticationError(`it decodes to ${data.length} bytes, not ${this.blockSize}`);
    return data;
  }

  private async undo(block: number, object: StoredObject): Promise<Uint8Array> {
    const layers = parseEncoding(object.encoding ?? this.o.defaultEncoding);
    const encryption = object.disk !== undefined && this.o.encryption && this.o.keyOf ? await this.o.keyOf(object.disk) : this.o.encryption;
    let body = object.body;
    let encrypted = false;
    for (let i = layers.length - 1; i >= 0; i--) {
      const layer = layers[i]!;
      const cipher = cipherOfLayer(layer);
      if (cipher !== undefined) {
        if (!encryption) throw new AuthenticationError(`it is encrypted (${cipher}) but --encrypt was not given`);
        if (cipher.toLowerCase() !== encryption.cipher.name.toLowerCase()) {
          throw new AuthenticationError(`it is encrypted with ${cipher}, not ${encryption.cipher.name}`);
        }
        if (i !== layers.length - 1) throw new AuthenticationError(`encryption is not its last encoding ('${object.encoding}')`);
        body = await encryption.decrypt(block, body, object.hmac);
        encrypted = true;
      } else if (isCompression(layer)) {
        body = await decompress(layer, body, this.blockSize);
      } else throw new AuthenticationError(`unknown Content-Encoding '${layer}'`);
    }
    // Unauthenticated bytes on an encrypted disk could be anyone's: never returned.
    if (encryption && !encrypted) throw new AuthenticationError("it is not encrypted, but this disk is (--encrypt)");
    return body;
  }

  stats(): StatGroup[] {
    const engine = this.o.encryption ? [["cipher", `${this.o.encryption.cipher.name} (${this.o.encryption.crypto.engine})`] as const] : [];
    return [{ layer: "codec", values: [...this.counters.entries(), ...engine] }, ...this.inner.stats()];
  }
}
