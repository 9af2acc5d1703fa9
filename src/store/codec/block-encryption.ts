/**
 * Encryption and authentication of one block, exactly as the original s3backer does it:
 *
 * - key   = PBKDF2-HMAC-SHA1(password, salt "<bucket>/<prefix>", 5000 rounds, key length)
 * - ivkey = PBKDF2-HMAC-SHA1(key, salt key, 5000 rounds, key length)
 * - IV of block n = the cipher (key and IV both ivkey) over "%08x" of n, zero-padded to 16 bytes
 * - body  = the cipher (key, IV of n) over the (compressed) block, PKCS#7 padded
 * - x-amz-meta-s3backer-hmac = "\"" + hex(HMAC-SHA1(key, "%08x" of n + cipher name + body)) + "\""
 *
 * So a body only verifies under its own password, bucket, prefix and block number. A key longer
 * than the cipher's (--keyLength) keys the cipher with its first bytes and the HMAC with all of it.
 * With --keyWrap the key is a random data key (wrapped-key.ts) instead, and all else is the same.
 */
import { pbkdf2Async } from "@noble/hashes/pbkdf2.js";
import { sha1 } from "@noble/hashes/legacy.js";
import { AES_BLOCK, encryptOneBlock, nobleCrypto, webCrypto, type BlockCrypto, type CipherSpec } from "./ciphers.ts";

const ROUNDS = 5000;
const encoder = new TextEncoder();
const blockLabel = (block: number) => block.toString(16).padStart(8, "0");

export interface EncryptionKeys {
  key: Uint8Array;
  ivKey: Uint8Array;
}

export async function deriveKeys(password: string, salt: string, keyLength: number): Promise<EncryptionKeys> {
  return keysOf(await pbkdf2Async(sha1, encoder.encode(password), encoder.encode(salt), { c: ROUNDS, dkLen: keyLength }));
}

/** The IV key that goes with a key, as the original derives it. */
async function keysOf(key: Uint8Array): Promise<EncryptionKeys> {
  return { key, ivKey: await pbkdf2Async(sha1, key, key, { c: ROUNDS, dkLen: key.length }) };
}

/** Why a body was refused: the caller turns it into EIO with the block number. */
export class AuthenticationError extends Error {}

/**
 * A body not signed as this block's: damaged or forged, a wrong key, or another block's object
 * answered by mistake (which asking again may cure).
 */
export class SignatureMismatch extends AuthenticationError {}

export class BlockEncryption {
  private constructor(
    readonly cipher: CipherSpec,
    private readonly keys: EncryptionKeys,
    readonly crypto: BlockCrypto,
  ) {}

  /** `engine` forces an implementation (tests and benchmarks); by default WebCrypto where it can. */
  static async create(cipher: CipherSpec, password: string, salt: string, keyLength: number, engine?: BlockCrypto["engine"]): Promise<BlockEncryption> {
    return BlockEncryption.withKeys(cipher, await deriveKeys(password, salt, keyLength), engine);
  }

  /** With a data key (a wrapped one, wrapped-key.ts) in place of the password's: the same block format. */
  static async fromKey(cipher: CipherSpec, key: Uint8Array, engine?: BlockCrypto["engine"]): Promise<BlockEncryption> {
    return BlockEncryption.withKeys(cipher, await keysOf(key), engine);
  }

  private static async withKeys(cipher: CipherSpec, keys: EncryptionKeys, engine?: BlockCrypto["engine"]): Promise<BlockEncryption> {
    const cipherKey = keys.key.subarray(0, cipher.keyLength);
    const crypto = (engine !== "noble" ? await webCrypto(cipherKey, keys.key) : undefined) ?? nobleCrypto(cipherKey, keys.key);
    if (engine && crypto.engine !== engine) throw new Error(`${engine} cannot do ${cipher.name} here`);
    return new BlockEncryption(cipher, keys, crypto);
  }

  /** The IV of one block: its "%08x" name, zero-padded, through the cipher keyed with ivkey. */
  blockIv(block: number): Uint8Array {
    const plain = new Uint8Array(AES_BLOCK);
    plain.set(encoder.encode(blockLabel(block)));
    return encryptOneBlock(this.keys.ivKey.subarray(0, this.cipher.keyLength), this.keys.ivKey.subarray(0, AES_BLOCK), plain);
  }

  /** Encrypts a payload; returns the body and the value of the authentication header. */
  async encrypt(block: number, payload: Uint8Array): Promise<{ body: Uint8Array; hmac: string }> {
    const body = await this.crypto.encrypt(this.blockIv(block), payload);
    return { body, hmac: `"${hex(await this.signature(block, body))}"` };
  }

  /** Checks a body against its authentication header, then decrypts it. */
  async decrypt(block: number, body: Uint8Array, hmacHeader: string | null): Promise<Uint8Array> {
    const claimed = /^"?([0-9a-fA-F]{40})"?$/.exec(hmacHeader?.trim() ?? "")?.[1]?.toLowerCase();
    if (!claimed) throw new SignatureMismatch("it is encrypted but carries no valid signature header");
    if (!sameBytes(hex(await this.signature(block, body)), claimed)) {
      throw new SignatureMismatch("its signature does not verify (wrong password, or the object was changed or moved)");
    }
    try {
      return await this.crypto.decrypt(this.blockIv(block), body);
    } catch {
      throw new AuthenticationError("it does not decrypt (bad padding)");
    }
  }

  private signature(block: number, body: Uint8Array): Promise<Uint8Array> {
    const head = encoder.encode(blockLabel(block) + this.cipher.name);
    const message = new Uint8Array(head.length + body.length);
    message.set(head);
    message.set(body, head.length);
    return this.crypto.sign(message);
  }
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("hex");

/** Compares without an early exit, so timing tells nothing about where two signatures differ. */
function sameBytes(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
