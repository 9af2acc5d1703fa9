/**
 * The codec's pieces against known answers: PBKDF2-HMAC-SHA1 (RFC 6070), HMAC-SHA1 (RFC 2202),
 * AES-CBC (NIST SP 800-38A), and a block written by Debian's s3backer 1.5.4. WebCrypto and the
 * pure-TypeScript engine must give the same bytes. Runs under Bun and Deno.
 */
import { expect, test } from "bun:test";
import { pbkdf2 } from "@noble/hashes/pbkdf2.js";
import { sha1 } from "@noble/hashes/legacy.js";
import { CIPHERS, cipherByName, nobleCrypto, webCrypto, type BlockCrypto } from "../../src/store/codec/ciphers.ts";
import { AuthenticationError, BlockEncryption } from "../../src/store/codec/block-encryption.ts";
import { compress, decompress, zstdContentSize } from "../../src/store/codec/compression.ts";
import { cipherOfLayer, parseEncoding } from "../../src/store/codec/content-encoding.ts";

const hex = (s: string) => new Uint8Array(s.match(/../g)!.map((b) => parseInt(b, 16)));
const toHex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
const text = (s: string) => new TextEncoder().encode(s);
const errorOf = (p: Promise<unknown>) => p.then(() => "no error", (e: Error) => e.message);

test("PBKDF2-HMAC-SHA1, RFC 6070", () => {
  expect(toHex(pbkdf2(sha1, text("password"), text("salt"), { c: 1, dkLen: 20 }))).toBe("0c60c80f961f0e71f3a9b524af6012062fe037a6");
  expect(toHex(pbkdf2(sha1, text("password"), text("salt"), { c: 4096, dkLen: 20 }))).toBe("4b007901b765489abead49d926f721d065a429c1");
});

async function engines(key: Uint8Array, macKey: Uint8Array): Promise<BlockCrypto[]> {
  const web = await webCrypto(key, macKey);
  return web ? [nobleCrypto(key, macKey), web] : [nobleCrypto(key, macKey)];
}

test("HMAC-SHA1, RFC 2202 cases 1 and 2, both engines", async () => {
  for (const e of await engines(new Uint8Array(16), new Uint8Array(20).fill(0x0b))) {
    expect(toHex(await e.sign(text("Hi There")))).toBe("b617318655057264e28bc0b6fb378c8ef146be00");
  }
  for (const e of await engines(new Uint8Array(16), text("Jefe"))) {
    expect(toHex(await e.sign(text("what do ya want for nothing?")))).toBe("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
  }
});

test("AES-CBC, NIST SP 800-38A F.2.1 and F.2.5, both engines, PKCS#7 padding added and removed", async () => {
  const iv = hex("000102030405060708090a0b0c0d0e0f");
  const plain = hex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51");
  const cases = [
    ["2b7e151628aed2a6abf7158809cf4f3c", "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"],
    ["603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d"],
  ] as const;
  for (const [key, expected] of cases) {
    for (const e of await engines(hex(key), new Uint8Array(20))) {
      const out = await e.encrypt(iv, plain);
      expect(out.length).toBe(48); // a whole block of padding after 32 aligned bytes
      expect(toHex(out.subarray(0, 32))).toBe(expected);
      expect(await e.decrypt(iv, out)).toEqual(plain);
    }
  }
});

test("WebCrypto and the pure-TypeScript engine agree on random blocks, for every cipher WebCrypto has", async () => {
  for (const cipher of CIPHERS) {
    const key = crypto.getRandomValues(new Uint8Array(cipher.keyLength));
    const web = await webCrypto(key, key);
    if (!web) continue; // e.g. AES-192 under Bun: the pure engine serves it
    const noble = nobleCrypto(key, key);
    for (const size of [1, 15, 16, 4096, 60000 + 7]) {
      const data = crypto.getRandomValues(new Uint8Array(size));
      const iv = crypto.getRandomValues(new Uint8Array(16));
      expect(await web.encrypt(iv, data)).toEqual(await noble.encrypt(iv, data));
      expect(await web.sign(data)).toEqual(await noble.sign(data));
    }
  }
});

// Written by Debian's s3backer 1.5.4: --encrypt --password=secret --prefix=pre/, bucket "bk",
// 4 KiB blocks; block 1 holds "hello world block one" and zeros.
const DEBIAN_BLOCK_1 = hex("69759fc6100dc2a081dde4fd296cec7af0c32b61cf4680582c301d529754e0902d421d55b4d333482415e39d64b77cc3fb7777566999529cad90109583373598");
const DEBIAN_HMAC_1 = '"59c8fd818c7ba122288d2356021f6dc5f0b30bef"';

test("a block written by the original decrypts, inflates and re-encrypts to the same bytes and signature", async () => {
  const enc = await BlockEncryption.create(cipherByName("aes-128-cbc")!, "secret", "bk/pre/", 16);
  const packed = await enc.decrypt(1, DEBIAN_BLOCK_1, DEBIAN_HMAC_1);
  const plain = await decompress("deflate", packed, 4096);
  const expected = new Uint8Array(4096);
  expected.set(text("hello world block one"));
  expect(plain).toEqual(expected);
  const again = await enc.encrypt(1, packed);
  expect(again.body).toEqual(DEBIAN_BLOCK_1);
  expect(again.hmac).toBe(DEBIAN_HMAC_1);
});

test("the signature binds password, bucket/prefix and block number", async () => {
  const aes = cipherByName("AES-128-CBC")!;
  const refuse = async (enc: BlockEncryption, block: number) => {
    const err = await enc.decrypt(block, DEBIAN_BLOCK_1, DEBIAN_HMAC_1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthenticationError);
  };
  await refuse(await BlockEncryption.create(aes, "Secret", "bk/pre/", 16), 1);
  await refuse(await BlockEncryption.create(aes, "secret", "bk/", 16), 1);
  await refuse(await BlockEncryption.create(aes, "secret", "other/pre/", 16), 1);
  await refuse(await BlockEncryption.create(aes, "secret", "bk/pre/", 16), 2);
  await refuse(await BlockEncryption.create(aes, "secret", "bk/pre/", 64), 1); // --keyLength changes the key
  const right = await BlockEncryption.create(aes, "secret", "bk/pre/", 16);
  expect(await right.decrypt(1, DEBIAN_BLOCK_1, null).catch((e: unknown) => e)).toBeInstanceOf(AuthenticationError);
  const flipped = DEBIAN_BLOCK_1.slice();
  flipped[10]! ^= 1;
  expect(await right.decrypt(1, flipped, DEBIAN_HMAC_1).catch((e: unknown) => e)).toBeInstanceOf(AuthenticationError);
});

test("both engines give the original's bytes at every key size, and a long --keyLength", async () => {
  for (const cipher of CIPHERS) {
    for (const keyLength of [cipher.keyLength, 64]) {
      const a = await BlockEncryption.create(cipher, "pw", "b/", keyLength, "noble");
      const b = await BlockEncryption.create(cipher, "pw", "b/", keyLength);
      const data = crypto.getRandomValues(new Uint8Array(4096));
      const x = await a.encrypt(7, data);
      expect(await b.encrypt(7, data)).toEqual(x);
      expect(await b.decrypt(7, x.body, x.hmac)).toEqual(data);
    }
  }
});

test("deflate (levels 1, 6, 9) and zstd (levels -5, 3, 19) round trips; never past one block; corrupt data is an error", async () => {
  const data = new Uint8Array(65536).map((_, i) => (i * 7) % 13);
  const cases = [["deflate", 1], ["deflate", 6], ["deflate", 9], ["zstd", -5], ["zstd", 3], ["zstd", 19]] as const;
  for (const [algorithm, level] of cases) {
    const packed = await compress(data, { algorithm, level });
    expect(packed.length).toBeLessThan(data.length / 4);
    // What the original's compress2() and ZSTD_compress() write: a zlib header, a zstd frame.
    if (algorithm === "deflate") expect(packed[0]).toBe(0x78);
    else {
      expect([...packed.subarray(0, 4)]).toEqual([0x28, 0xb5, 0x2f, 0xfd]);
      expect(zstdContentSize(packed)).toBe(data.length);
    }
    expect(await decompress(algorithm, packed, data.length)).toEqual(data);
    expect(await errorOf(decompress(algorithm, packed, data.length - 1))).toMatch(/inflates beyond one block/);
    expect(await errorOf(decompress(algorithm, packed.subarray(0, packed.length >> 1), data.length))).toMatch(/corrupt or truncated/);
  }
});

test("Content-Encoding values as the original writes them", () => {
  expect(parseEncoding("deflate, encrypt-AES-128-CBC")).toEqual(["deflate", "encrypt-AES-128-CBC"]);
  expect(parseEncoding("deflate,encrypt-AES-128-CBC")).toEqual(["deflate", "encrypt-AES-128-CBC"]);
  expect(parseEncoding(null)).toEqual([]);
  expect(cipherOfLayer("encrypt-AES-256-CBC")).toBe("AES-256-CBC");
  expect(cipherOfLayer("deflate")).toBeUndefined();
});
