/**
 * The wrapped data key (--keyWrap) without a server: Argon2id against RFC 9106's answer, a round
 * trip, a wrong password, and a key object changed in any one field, which must never yield a key
 * (a changed byte anywhere fails as a wrong password does, or the object is refused unread). A data
 * key encrypts blocks exactly as the original's password-derived key does. Runs under Bun and Deno.
 */
import { expect, test } from "bun:test";
import { argon2id } from "@noble/hashes/argon2.js";
import { BlockEncryption, deriveKeys } from "../../src/store/codec/block-encryption.ts";
import { cipherByName } from "../../src/store/codec/ciphers.ts";
import { KeyObjectError, newDataKey, parseKeyObject, unwrapKey, WrongPassword, wrapKey, type KdfParams } from "../../src/store/codec/wrapped-key.ts";

const AES128 = cipherByName("AES-128-CBC")!;
const AES256 = cipherByName("AES-256-CBC")!;
/** Cheap parameters: what is tested is the format, not the cost. */
const CHEAP: KdfParams = { m: 64, t: 1, p: 1 };
const toHex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
const fill = (n: number, v: number) => new Uint8Array(n).fill(v);
const errorOf = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e);

test("Argon2id, RFC 9106 section 5.3", () => {
  const tag = argon2id(fill(32, 1), fill(16, 2), { m: 32, t: 3, p: 4, key: fill(8, 3), personalization: fill(12, 4), dkLen: 32 });
  expect(toHex(tag)).toBe("0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659");
});

test("a data key wrapped and unwrapped: the same key, cipher and generation; a fresh salt and nonce each time", async () => {
  const key = newDataKey(AES256, 48);
  const one = await wrapKey(key, "pw", CHEAP);
  const two = await wrapKey(key, "pw", CHEAP);
  const back = await unwrapKey(one, "pw");
  expect(back.key).toEqual(key.key);
  expect(back.cipher.name).toBe("AES-256-CBC");
  expect(back.generation).toBe(1);
  expect(parseKeyObject(one).header.kdf.salt).not.toBe(parseKeyObject(two).header.kdf.salt);
  expect(parseKeyObject(one).header.wrap.nonce).not.toBe(parseKeyObject(two).header.wrap.nonce);
  expect(newDataKey(AES128, 16).key).not.toEqual(newDataKey(AES128, 16).key);
});

test("new keys are wrapped with Argon2id at 64 MiB, 3 passes, 4 lanes", async () => {
  const { header } = parseKeyObject(await wrapKey(newDataKey(AES128, 16), "pw"));
  expect(header.kdf).toMatchObject({ name: "argon2id", version: 0x13, m: 65536, t: 3, p: 4 });
});

test("a wrong password is WrongPassword, never a key", async () => {
  const body = await wrapKey(newDataKey(AES128, 16), "right", CHEAP);
  expect(await errorOf(unwrapKey(body, "wrong"))).toBeInstanceOf(WrongPassword);
});

test("a key object changed in any one field never yields a key", async () => {
  const body = await wrapKey({ ...newDataKey(AES128, 16), generation: 5 }, "pw", CHEAP);
  const doc = JSON.parse(new TextDecoder().decode(body));
  const flip = (b64: string) => Buffer.from(Buffer.from(b64, "base64").map((x, i) => (i === 0 ? x ^ 1 : x))).toString("base64");
  const changes: [string, (d: typeof doc) => void][] = [
    ["cipher", (d) => (d.cipher = "AES-256-CBC")],
    ["keyLength", (d) => (d.keyLength = 17)],
    ["generation", (d) => (d.generation = 6)],
    ["kdf.m", (d) => (d.kdf.m = 72)],
    ["kdf.t", (d) => (d.kdf.t = 2)],
    ["kdf.p", (d) => (d.kdf.p = 2)],
    ["kdf.salt", (d) => (d.kdf.salt = flip(d.kdf.salt))],
    ["wrap.nonce", (d) => (d.wrap.nonce = flip(d.wrap.nonce))],
    ["key", (d) => (d.key = flip(d.key))],
  ];
  for (const [field, change] of changes) {
    const changed = structuredClone(doc);
    change(changed);
    const err = await errorOf(unwrapKey(new TextEncoder().encode(JSON.stringify(changed)), "pw"));
    if (!(err instanceof WrongPassword || err instanceof KeyObjectError)) throw new Error(`${field} changed: ${err === undefined ? "a key came out" : String(err)}`);
  }
});

test("not a key object, a newer version, or a KDF asking for too much: refused before any derivation", async () => {
  const body = await wrapKey(newDataKey(AES128, 16), "pw", CHEAP);
  const doc = JSON.parse(new TextDecoder().decode(body));
  const refusal = async (bytes: Uint8Array) => {
    const err = await errorOf(unwrapKey(bytes, "pw"));
    expect(err).toBeInstanceOf(KeyObjectError);
    return (err as Error).message;
  };
  const as = (d: unknown) => new TextEncoder().encode(JSON.stringify(d));
  expect(await refusal(new Uint8Array([0xff, 0x00, 0x41]))).toMatch(/not JSON/);
  expect(await refusal(as({ hello: "world" }))).toMatch(/not a key object/);
  expect(await refusal(as({ ...doc, version: 2 }))).toMatch(/newer s3backer/);
  expect(await refusal(as({ ...doc, cipher: "DES-CBC" }))).toMatch(/unknown cipher/);
  const started = performance.now();
  expect(await refusal(as({ ...doc, kdf: { ...doc.kdf, m: 64 * 1024 * 1024 } }))).toMatch(/out of bounds/);
  expect(await refusal(as({ ...doc, kdf: { ...doc.kdf, t: 1000 } }))).toMatch(/out of bounds/);
  expect(performance.now() - started).toBeLessThan(1000);
  expect(await refusal(as({ ...doc, key: doc.key.slice(4) }))).toMatch(/bad sealed key/);
});

test("a data key encrypts and signs blocks exactly as the original's key from the password does", async () => {
  const salt = "bucket/prefix/";
  const original = await BlockEncryption.create(AES128, "pw", salt, 16, "noble");
  const wrapped = await BlockEncryption.fromKey(AES128, (await deriveKeys("pw", salt, 16)).key, "noble");
  const data = new Uint8Array(4096).map((_, i) => i * 7);
  expect(await wrapped.encrypt(9, data)).toEqual(await original.encrypt(9, data));
  const { body, hmac } = await wrapped.encrypt(3, data);
  expect(await original.decrypt(3, body, hmac)).toEqual(data);
});
