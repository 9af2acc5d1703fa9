/**
 * The block ciphers of `--encrypt`, under the names OpenSSL (and so the original) gives them, and
 * two interchangeable implementations of AES-CBC with PKCS#7 padding and HMAC-SHA1: the runtime's
 * WebCrypto (native, about ten times faster) and @noble (pure TypeScript), used where WebCrypto
 * lacks a key size (AES-192 in Bun) and as the reference the tests hold WebCrypto to.
 */
import { cbc } from "@noble/ciphers/aes.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha1 } from "@noble/hashes/legacy.js";

export interface CipherSpec {
  /** As OpenSSL names it; part of the authenticated data. */
  readonly name: string;
  readonly keyLength: number;
}

export const CIPHERS: readonly CipherSpec[] = [
  { name: "AES-128-CBC", keyLength: 16 },
  { name: "AES-192-CBC", keyLength: 24 },
  { name: "AES-256-CBC", keyLength: 32 },
];
export const DEFAULT_CIPHER = CIPHERS[0]!;
export const AES_BLOCK = 16;
/** OpenSSL's EVP_MAX_KEY_LENGTH: the most --keyLength may ask for. */
export const MAX_KEY_LENGTH = 64;

export const cipherByName = (name: string) => CIPHERS.find((c) => c.name.toLowerCase() === name.toLowerCase());

/** Bulk encryption and signing with one fixed key pair. */
export interface BlockCrypto {
  readonly engine: "webcrypto" | "noble";
  /** AES-CBC with PKCS#7 padding. */
  encrypt(iv: Uint8Array, data: Uint8Array): Promise<Uint8Array>;
  /** Throws when the padding is not valid. */
  decrypt(iv: Uint8Array, data: Uint8Array): Promise<Uint8Array>;
  /** HMAC-SHA1 of the message. */
  sign(message: Uint8Array): Promise<Uint8Array>;
}

export function nobleCrypto(cipherKey: Uint8Array, macKey: Uint8Array): BlockCrypto {
  return {
    engine: "noble",
    encrypt: async (iv, data) => cbc(cipherKey, iv).encrypt(data),
    decrypt: async (iv, data) => cbc(cipherKey, iv).decrypt(data),
    sign: async (message) => hmac(sha1, macKey, message),
  };
}

/**
 * WebCrypto takes no views of shared memory (FUSE request buffers are shared with the reader
 * threads), so those are copied; anything else goes as it is.
 */
function unshared(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes);
}

/** WebCrypto for these keys, or undefined where the runtime has none or refuses the key size. */
export async function webCrypto(cipherKey: Uint8Array, macKey: Uint8Array): Promise<BlockCrypto | undefined> {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) return undefined;
  let aes: CryptoKey;
  let mac: CryptoKey;
  try {
    aes = await subtle.importKey("raw", unshared(cipherKey), "AES-CBC", false, ["encrypt", "decrypt"]);
    mac = await subtle.importKey("raw", unshared(macKey), { name: "HMAC", hash: "SHA-1" }, false, ["sign"]);
    // Some runtimes import a key size they cannot use: try it once.
    await subtle.encrypt({ name: "AES-CBC", iv: new Uint8Array(AES_BLOCK) }, aes, new Uint8Array(1));
  } catch {
    return undefined;
  }
  return {
    engine: "webcrypto",
    encrypt: async (iv, data) => new Uint8Array(await subtle.encrypt({ name: "AES-CBC", iv: unshared(iv) }, aes, unshared(data))),
    decrypt: async (iv, data) => new Uint8Array(await subtle.decrypt({ name: "AES-CBC", iv: unshared(iv) }, aes, unshared(data))),
    sign: async (message) => new Uint8Array(await subtle.sign("HMAC", mac, unshared(message))),
  };
}

/** One AES block encrypted without padding (for the per-block IV). */
export function encryptOneBlock(key: Uint8Array, iv: Uint8Array, block: Uint8Array): Uint8Array {
  return cbc(key, iv, { disablePadding: true }).encrypt(block);
}
