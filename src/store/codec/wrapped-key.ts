/**
 * A disk's data key wrapped by its password (--encrypt --keyWrap), as the key object holds it: a
 * small JSON document (format in docs/design/keys.md). Blocks are encrypted with the data key
 * exactly as the original encrypts them with its password-derived key, so only the wrapping is
 * new, and a new password rewrites this one object, never a block.
 *
 * - The key-encryption key is Argon2id (RFC 9106) of the password, with a random salt and the
 *   parameters stored beside it: memory-hard, so a guess costs 64 MiB as well as time.
 * - The data key is sealed with AES-256-GCM under it. Everything else in the document (format,
 *   cipher, key length, KDF parameters and salt, nonce, generation) is its associated data, so a
 *   changed byte anywhere fails like a wrong password: a tampered key object never yields a key.
 */
import { argon2idAsync } from "@noble/hashes/argon2.js";
import { gcm } from "@noble/ciphers/aes.js";
import { cipherByName, MAX_KEY_LENGTH, type CipherSpec } from "./ciphers.ts";

const FORMAT = "s3backer-wrapped-key";
const VERSION = 1;
const ARGON2_VERSION = 0x13;
const SALT_BYTES = 16;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

export interface KdfParams {
  /** Memory in KiB. */
  m: number;
  /** Passes over the memory. */
  t: number;
  /** Lanes. */
  p: number;
}

/** RFC 9106's second recommended setting (64 MiB, 3 passes, 4 lanes): about a second here. */
export const DEFAULT_KDF: KdfParams = { m: 64 * 1024, t: 3, p: 4 };
/** Beyond these a key object is refused unread: a forged one could ask for any amount of memory or time. */
const KDF_LIMITS: KdfParams = { m: 1024 * 1024, t: 32, p: 16 };

/** A key object that is not one, or not one this version reads. */
export class KeyObjectError extends Error {}
/** The password does not open the key object (or the object was changed: the two look the same). */
export class WrongPassword extends Error {}

export interface DataKey {
  cipher: CipherSpec;
  /** keyLength bytes: the cipher's key is its first bytes, the HMAC's all of it (as the original). */
  key: Uint8Array;
  /** 1 when made, one more at each password change. */
  generation: number;
}

interface Header {
  format: string;
  version: number;
  cipher: string;
  keyLength: number;
  generation: number;
  kdf: { name: "argon2id"; version: number; m: number; t: number; p: number; salt: string };
  wrap: { name: "AES-256-GCM"; nonce: string };
}

const b64 = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("base64");
const unb64 = (text: string) => new Uint8Array(Buffer.from(text, "base64"));
const random = (n: number) => crypto.getRandomValues(new Uint8Array(n));

/** A new random data key for `cipher`, `keyLength` bytes long. */
export function newDataKey(cipher: CipherSpec, keyLength: number): DataKey {
  return { cipher, key: random(keyLength), generation: 1 };
}

/** The key object's bytes: `key` wrapped by `password`, with a fresh salt and nonce. */
export async function wrapKey(key: DataKey, password: string, kdf: KdfParams = DEFAULT_KDF): Promise<Uint8Array> {
  const header: Header = {
    format: FORMAT, version: VERSION, cipher: key.cipher.name, keyLength: key.key.length, generation: key.generation,
    kdf: { name: "argon2id", version: ARGON2_VERSION, ...kdf, salt: b64(random(SALT_BYTES)) },
    wrap: { name: "AES-256-GCM", nonce: b64(random(NONCE_BYTES)) },
  };
  const kek = await keyEncryptionKey(password, header);
  const sealed = gcm(kek, unb64(header.wrap.nonce), associatedData(header)).encrypt(key.key);
  return new TextEncoder().encode(`${JSON.stringify({ ...header, key: b64(sealed) }, null, 1)}\n`);
}

/** The data key in a key object; WrongPassword if `password` does not open it, KeyObjectError if it is not a key object. */
export async function unwrapKey(bytes: Uint8Array, password: string): Promise<DataKey> {
  const { header, sealed } = parseKeyObject(bytes);
  const kek = await keyEncryptionKey(password, header);
  let key: Uint8Array;
  try {
    key = gcm(kek, unb64(header.wrap.nonce), associatedData(header)).decrypt(sealed);
  } catch {
    throw new WrongPassword("wrong password (or the key object was changed)");
  }
  return { cipher: cipherByName(header.cipher)!, key, generation: header.generation };
}

/** What a key object says of itself, checked field by field; the sealed key apart. */
export function parseKeyObject(bytes: Uint8Array): { header: Header; sealed: Uint8Array } {
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw new KeyObjectError("not a key object (not JSON)");
  }
  const o = doc as Record<string, unknown>;
  if (typeof o !== "object" || o === null || o.format !== FORMAT) throw new KeyObjectError("not a key object");
  if (o.version !== VERSION) throw new KeyObjectError(`a key object of version ${String(o.version)}, made by a newer s3backer (this one reads version ${VERSION})`);
  const kdf = o.kdf as Record<string, unknown> | undefined;
  const wrap = o.wrap as Record<string, unknown> | undefined;
  const cipher = typeof o.cipher === "string" ? cipherByName(o.cipher) : undefined;
  const whole = (v: unknown, min: number, max: number): v is number => Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max;
  const base64 = (v: unknown, length: number): v is string => typeof v === "string" && /^[A-Za-z0-9+/]*={0,2}$/.test(v) && unb64(v).length === length;
  if (!cipher) throw new KeyObjectError(`unknown cipher ${JSON.stringify(o.cipher)}`);
  if (!whole(o.keyLength, cipher.keyLength, MAX_KEY_LENGTH) || !whole(o.generation, 1, Number.MAX_SAFE_INTEGER)) throw new KeyObjectError("bad key length or generation");
  if (typeof kdf !== "object" || kdf === null || kdf.name !== "argon2id" || kdf.version !== ARGON2_VERSION) throw new KeyObjectError("unknown key derivation");
  if (!whole(kdf.m, 8, KDF_LIMITS.m) || !whole(kdf.t, 1, KDF_LIMITS.t) || !whole(kdf.p, 1, KDF_LIMITS.p) || kdf.m < 8 * kdf.p) {
    throw new KeyObjectError(`key derivation parameters out of bounds (m ${String(kdf.m)} KiB, t ${String(kdf.t)}, p ${String(kdf.p)})`);
  }
  if (!base64(kdf.salt, SALT_BYTES)) throw new KeyObjectError("bad salt");
  if (typeof wrap !== "object" || wrap === null || wrap.name !== "AES-256-GCM" || !base64(wrap.nonce, NONCE_BYTES)) throw new KeyObjectError("unknown key wrapping");
  if (!base64(o.key, o.keyLength + TAG_BYTES)) throw new KeyObjectError("bad sealed key");
  const header: Header = {
    format: FORMAT, version: VERSION, cipher: cipher.name, keyLength: o.keyLength, generation: o.generation,
    kdf: { name: "argon2id", version: ARGON2_VERSION, m: kdf.m, t: kdf.t, p: kdf.p, salt: kdf.salt },
    wrap: { name: "AES-256-GCM", nonce: wrap.nonce },
  };
  return { header, sealed: unb64(o.key) };
}

function keyEncryptionKey(password: string, header: Header): Promise<Uint8Array> {
  const { m, t, p, salt } = header.kdf;
  return argon2idAsync(new TextEncoder().encode(password), unb64(salt), { m, t, p, version: ARGON2_VERSION, dkLen: 32, maxmem: (KDF_LIMITS.m + 1) * 1024 });
}

/** The header as authenticated: rebuilt from the checked fields in a fixed order, not taken from the stored text. */
function associatedData(header: Header): Uint8Array {
  const { kdf, wrap } = header;
  const fixed = [header.format, header.version, header.cipher, header.keyLength, header.generation, kdf.name, kdf.version, kdf.m, kdf.t, kdf.p, kdf.salt, wrap.name, wrap.nonce];
  return new TextEncoder().encode(JSON.stringify(fixed));
}
