/**
 * The codec layer over real HTTP to the embedded server: round trips at several block sizes and
 * levels, what is stored, and a bucket that someone tampers with (each tampering ends in EIO).
 */
import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { Errno, FsError } from "../../src/errors.ts";
import { ConfigError } from "../../src/errors.ts";
import { isAllZero } from "../../src/store/block-store.ts";
import { BlockEncryption } from "../../src/store/codec/block-encryption.ts";
import { cipherByName } from "../../src/store/codec/ciphers.ts";
import type { Algorithm } from "../../src/store/codec/compression.ts";
import { checkDiskEncoding } from "../../src/store/codec/disk-check.ts";
import { ConsistencyGuard } from "../../src/store/consistency-guard/consistency-guard.ts";
import type { S3Store } from "../../src/object/s3/s3-store.ts";
import { pattern } from "../helpers/data.ts";
import { embeddedPeer, rawClient, startEmbedded } from "../helpers/s3.ts";
import { testClient, testS3Store, testStack } from "../helpers/stack.ts";
import { createHash } from "node:crypto";

const server = startEmbedded(["cdc"]);
const raw = rawClient(embeddedPeer(server));
afterAll(() => server.stop());
beforeEach(() => server.reset());

const AES128 = cipherByName("AES-128-CBC")!;

function objects(blockSize: number, prefix = `${Math.random().toString(36).slice(2)}/`) {
  return testS3Store(testClient({ baseURL: server.url, bucket: "cdc" }), { prefix, blockSize });
}

async function codec(opts: { blockSize?: number; level?: number; algorithm?: Algorithm; password?: string; prefix?: string; keepSizes?: boolean; defaultEncoding?: string } = {}) {
  const s3 = objects(opts.blockSize ?? 4096, opts.prefix);
  const encryption = opts.password === undefined ? undefined : await BlockEncryption.create(AES128, opts.password, `cdc/${s3.key(0).split("/")[0]}/`, 16);
  const compression = opts.level !== undefined ? { algorithm: opts.algorithm ?? "deflate", level: opts.level } : encryption ? { algorithm: "deflate" as const, level: 6 } : undefined;
  return { s3, codec: testStack(s3, { codec: { compression, encryption, defaultEncoding: opts.defaultEncoding, keepSizes: opts.keepSizes ?? false } }).codec };
}

const stored = (s3: S3Store, block: number) => server.objects.get("cdc", s3.key(block));
const random = (n: number) => {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  return out;
};

async function eio(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(FsError);
  expect((err as FsError).errno).toBe(Errno.EIO);
  return (err as Error).message;
}

/** Rewrites a stored object over HTTP, as someone with write access to the bucket could. */
async function tamper(s3: S3Store, block: number, change: (o: { body: Uint8Array; headers: Record<string, string> }) => void) {
  const path = `cdc/${s3.key(block)}`;
  const got = await raw("GET", path);
  const headers: Record<string, string> = {};
  for (const name of ["content-encoding", "x-amz-meta-s3backer-hmac"]) {
    const v = got.headers.get(name);
    if (v !== null) headers[name] = v;
  }
  const object = { body: got.body, headers };
  change(object);
  expect((await raw("PUT", path, { body: object.body, headers: object.headers })).status).toBe(200);
}

describe("round trips", () => {
  for (const blockSize of [512, 4096, 65536, 1 << 20]) {
    const cases = [[undefined, undefined, undefined], ["deflate", 1, undefined], ["deflate", 9, undefined], ["zstd", 3, undefined], ["zstd", -5, undefined], [undefined, undefined, "pw"], ["deflate", 9, "pw"], ["zstd", 19, "pw"]] as const;
    for (const [algorithm, level, password] of cases) {
      test(`${blockSize}-byte blocks, ${algorithm ?? "no"} compression ${level ?? ""}, ${password ? "encrypted" : "clear"}`, async () => {
        const { s3, codec: c } = await codec({ blockSize, algorithm, level, password });
        const compressible = pattern(blockSize, 3).map((b, i) => (i % 64 < 48 ? 0x41 : b));
        const noise = random(blockSize);
        await c.writeBlock(1, compressible);
        await c.writeBlock(2, noise);
        expect(await c.readBlock(1)).toEqual(compressible);
        expect(await c.readBlock(2)).toEqual(noise);
        const encrypt = password ? ["encrypt-AES-128-CBC"] : [];
        const compress = level !== undefined || password !== undefined;
        expect(stored(s3, 1)!.contentEncoding).toBe([...(compress ? [algorithm ?? "deflate"] : []), ...encrypt].join(", ") || undefined);
        // Noise does not shrink: stored raw (then encrypted when asked).
        expect(stored(s3, 2)!.contentEncoding).toBe(encrypt.join(", ") || undefined);
        if (compress) expect(stored(s3, 1)!.body.length).toBeLessThan(blockSize / 2);
        if (password) expect(stored(s3, 2)!.meta["x-amz-meta-s3backer-hmac"]).toMatch(/^"[0-9a-f]{40}"$/);
        else expect(stored(s3, 2)!.body).toEqual(noise);
      });
    }
  }
});

test("zero blocks are deleted before encryption and read back as zeros; block 0 keeps the sizes, encrypted", async () => {
  const { s3, codec: c } = await codec({ password: "pw", keepSizes: true });
  await c.writeBlock(3, pattern(4096, 1));
  await c.writeBlock(3, new Uint8Array(4096));
  expect(stored(s3, 3)).toBeUndefined();
  expect(isAllZero(await c.readBlock(3))).toBe(true);
  await c.writeBlock(0, null);
  const zero = stored(s3, 0)!;
  expect(zero.contentEncoding).toBe("deflate, encrypt-AES-128-CBC");
  expect(zero.meta["x-amz-meta-s3backer-blocksize"]).toBe("4096");
  expect(isAllZero(await c.readBlock(0))).toBe(true);
});

test("the MD5 a reloaded cache is checked against is that of the plain bytes, whatever the encoding", async () => {
  const { codec: c } = await codec({ password: "pw" });
  const data = pattern(4096, 9);
  await c.writeBlock(4, data);
  expect(await c.storedMd5(4)).toBe(createHash("md5").update(data).digest("hex"));
  expect(await c.storedMd5(5)).toBeNull();
});

describe("a bucket someone tampers with: never data, always EIO", () => {
  test("a flipped byte, a truncated body, a missing or wrong signature", async () => {
    const { s3, codec: c } = await codec({ password: "pw" });
    for (const b of [1, 2, 3, 4]) await c.writeBlock(b, pattern(4096, b));
    await tamper(s3, 1, (o) => (o.body[5]! ^= 0x10));
    await tamper(s3, 2, (o) => (o.body = o.body.subarray(0, o.body.length - 16)));
    await tamper(s3, 3, (o) => delete o.headers["x-amz-meta-s3backer-hmac"]);
    await tamper(s3, 4, (o) => (o.headers["x-amz-meta-s3backer-hmac"] = `"${"0".repeat(40)}"`));
    expect(await eio(c.readBlock(1))).toMatch(/block 1 refused: its signature does not verify/);
    expect(await eio(c.readBlock(2))).toMatch(/block 2 refused: its signature does not verify/);
    expect(await eio(c.readBlock(3))).toMatch(/block 3 refused: it is encrypted but carries no valid signature/);
    expect(await eio(c.readBlock(4))).toMatch(/block 4 refused: its signature does not verify/);
    expect(c.stats()[0]!.values).toContainEqual(["blocks refused", 4, { counter: true }]);
  });

  test("two blocks swapped: each verifies only under its own number", async () => {
    const { s3, codec: c } = await codec({ password: "pw" });
    await c.writeBlock(1, pattern(4096, 1));
    await c.writeBlock(2, pattern(4096, 2));
    const one = stored(s3, 1)!;
    const two = stored(s3, 2)!;
    await tamper(s3, 1, (o) => ((o.body = two.body), (o.headers["x-amz-meta-s3backer-hmac"] = two.meta["x-amz-meta-s3backer-hmac"]!)));
    await tamper(s3, 2, (o) => ((o.body = one.body), (o.headers["x-amz-meta-s3backer-hmac"] = one.meta["x-amz-meta-s3backer-hmac"]!)));
    await eio(c.readBlock(1));
    await eio(c.readBlock(2));
  });

  test("an old version put back: the consistency guard sees it is not what was written", async () => {
    const { s3, codec: c } = await codec({ password: "pw" });
    const guard = new ConsistencyGuard(c, { cacheSize: 64, cacheTimeMs: 60_000, minWriteDelayMs: 0, initialRetryPauseMs: 5, maxRetryPauseMs: 100 });
    await guard.writeBlock(1, pattern(4096, 1));
    const v1 = stored(s3, 1)!;
    await guard.writeBlock(1, pattern(4096, 2));
    await tamper(s3, 1, (o) => ((o.body = v1.body), (o.headers["x-amz-meta-s3backer-hmac"] = v1.meta["x-amz-meta-s3backer-hmac"]!)));
    expect(await eio(guard.readBlock(1))).toMatch(/older version/);
  });

  test("clear data on an encrypted disk, encrypted data without --encrypt, another cipher, an unknown encoding", async () => {
    const { s3, codec: c } = await codec({ password: "pw" });
    await c.writeBlock(1, pattern(4096, 1));
    await c.writeBlock(2, pattern(4096, 2));
    await c.writeBlock(3, pattern(4096, 3));
    await tamper(s3, 1, (o) => ((o.body = pattern(4096, 1)), (o.headers = {})));
    await tamper(s3, 2, (o) => (o.headers["content-encoding"] = "deflate, encrypt-AES-256-CBC"));
    await tamper(s3, 3, (o) => (o.headers["content-encoding"] = "gzip"));
    expect(await eio(c.readBlock(1))).toMatch(/it is not encrypted, but this disk is/);
    expect(await eio(c.readBlock(2))).toMatch(/encrypted with AES-256-CBC, not AES-128-CBC/);
    expect(await eio(c.readBlock(3))).toMatch(/unknown Content-Encoding 'gzip'/);
    const plain = testStack(s3).codec;
    await c.writeBlock(4, pattern(4096, 4));
    expect(await eio(plain.readBlock(4))).toMatch(/it is encrypted \(AES-128-CBC\) but --encrypt was not given/);
  });

  test("a deflate body that inflates past one block, and one that is not deflate at all", async () => {
    const { s3, codec: c } = await codec({ level: 6 });
    const big = testStack(objects(8192, s3.key(0).split("/")[0] + "/"), { codec: { compression: { algorithm: "deflate", level: 6 } } }).codec;
    await big.writeBlock(1, new Uint8Array(8192).fill(7));
    await c.writeBlock(2, new Uint8Array(4096).fill(7));
    await tamper(s3, 2, (o) => (o.body = o.body.map((b) => b ^ 0x55)));
    expect(await eio(c.readBlock(1))).toMatch(/inflates beyond one block/);
    expect(await eio(c.readBlock(2))).toMatch(/corrupt or truncated/);
  });
});

test("--defaultContentEncoding fills in for a server that drops the header", async () => {
  const { s3, codec: c } = await codec({ level: 6, defaultEncoding: "deflate" });
  await c.writeBlock(1, new Uint8Array(4096).fill(9));
  await tamper(s3, 1, (o) => (o.headers = {}));
  expect(stored(s3, 1)!.contentEncoding).toBeUndefined();
  expect(await c.readBlock(1)).toEqual(new Uint8Array(4096).fill(9));
});

describe("the start-up check", () => {
  const refusal = (p: Promise<unknown>) => p.then(() => "accepted", (e: unknown) => (expect(e).toBeInstanceOf(ConfigError), (e as Error).message));

  test("an empty disk is fine either way; a wrong password and mixing are refused, found through a listing when block 0 is absent", async () => {
    const prefix = `${Math.random().toString(36).slice(2)}/`;
    const { s3, codec: right } = await codec({ password: "pw", prefix });
    const { codec: wrong } = await codec({ password: "nope", prefix });
    const { codec: clear } = await codec({ prefix });
    expect(await refusal(checkDiskEncoding(s3, right, true, undefined))).toBe("accepted");
    await right.writeBlock(5, pattern(4096, 5)); // no block 0, as the original leaves a zero block 0
    expect(await refusal(checkDiskEncoding(s3, right, true, undefined))).toBe("accepted");
    expect(await refusal(checkDiskEncoding(s3, wrong, true, undefined))).toMatch(/cannot mount: block 5 refused: its signature does not verify \(wrong password/);
    expect(await refusal(checkDiskEncoding(s3, clear, false, undefined))).toMatch(/the disk is encrypted \(block 5 is '(deflate, )?encrypt-AES-128-CBC'\): mount it with --encrypt/);
    const other = `${Math.random().toString(36).slice(2)}/`;
    const { s3: s3b, codec: plain } = await codec({ prefix: other });
    const { codec: enc } = await codec({ password: "pw", prefix: other });
    await plain.writeBlock(0, pattern(4096, 1));
    expect(await refusal(checkDiskEncoding(s3b, enc, true, undefined))).toMatch(/--encrypt was given but the disk is not encrypted \(block 0/);
  });
});
