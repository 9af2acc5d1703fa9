/**
 * An encrypted block read through a server that answers, for a while, with another block's body
 * and headers (ETag and all: only the block's signature can tell): the read asks again, within the
 * retry budget, and returns the block's own bytes; a block that stays wrong on the server is EIO
 * once the budget is spent, and a bad body is never returned.
 */
import { afterAll, afterEach, expect, test } from "bun:test";
import { Errno, FsError } from "../../src/errors.ts";
import { Logger } from "../../src/log.ts";
import { BlockEncryption } from "../../src/store/codec/block-encryption.ts";
import { cipherByName } from "../../src/store/codec/ciphers.ts";
import { Codec } from "../../src/store/codec/codec.ts";
import { S3Client } from "../../src/object/s3/s3-client.ts";
import { S3Store } from "../../src/object/s3/s3-store.ts";
import { pattern } from "../helpers/data.ts";
import { FaultProxy } from "../helpers/fault-proxy.ts";
import { ACCESS, embeddedPeer, rawClient, SECRET, startEmbedded } from "../helpers/s3.ts";

const BUCKET = "swp";
const server = startEmbedded([BUCKET]);
const proxy = await FaultProxy.start({ upstream: server.url, credentials: { accessKey: ACCESS, secretKey: SECRET } });
afterEach(() => proxy.reset());
afterAll(async () => {
  await proxy.stop();
  server.stop();
});

const BS = 4096;

async function encryptedDisk(maxRetryPauseMs: number) {
  const prefix = `${Math.random().toString(36).slice(2)}/`;
  const client = new S3Client({
    baseURL: proxy.url, bucket: BUCKET, vhost: false, region: "us-east-1",
    credentials: { origin: "test", get: async () => ({ accessKeyId: ACCESS, secretAccessKey: SECRET }) },
    timeoutMs: 5000, initialRetryPauseMs: 5, maxRetryPauseMs, insecure: false, caFile: undefined,
    maxUploadBps: 0, maxDownloadBps: 0, debugHttp: false, keepAlive: true, log: new Logger({ kind: "file", path: "/dev/null" }),
  });
  const s3 = new S3Store(client, { prefix, hashPrefix: false, blockSize: BS, numBlocks: 16, putHeaders: {}, listThreads: 4 });
  const encryption = await BlockEncryption.create(cipherByName("AES-128-CBC")!, "pw", `${BUCKET}/${prefix}`, 16);
  const codec = new Codec(s3, { compression: { algorithm: "deflate", level: 6 }, encryption, defaultEncoding: undefined, keepSizes: false });
  for (let b = 0; b < 4; b++) await codec.writeBlock(b, pattern(BS, b + 1));
  // Read once each, so that the proxy has other blocks' answers to swap in.
  for (let b = 0; b < 4; b++) expect(await codec.readBlock(b)).toEqual(pattern(BS, b + 1));
  return { codec, s3, retries: () => client.stats.of("GET").retries };
}

test("another block's body and headers for 3 answers, then the right one: the read asks again and gets its own bytes", async () => {
  const { codec, retries } = await encryptedDisk(5000);
  const before = retries();
  proxy.set({ keyPattern: /\/00000002$/, swap: 1, swapHeaders: true, limit: 3 });
  expect(await codec.readBlock(2)).toEqual(pattern(BS, 3));
  expect(proxy.fired.swap).toBe(3);
  expect(retries() - before).toBe(3);
});

test("a block swapped on the server for good: EIO once the retry budget is spent, never another block's bytes", async () => {
  const { codec, s3, retries } = await encryptedDisk(100);
  const raw = rawClient(embeddedPeer(server));
  const other = await raw("GET", `${BUCKET}/${s3.key(1)}`);
  const headers = Object.fromEntries([...other.headers].filter(([n]) => n.startsWith("x-amz-meta-") || n === "content-encoding"));
  expect((await raw("PUT", `${BUCKET}/${s3.key(2)}`, { headers, body: other.body })).status).toBe(200);
  const before = retries();
  const err = await codec.readBlock(2).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(FsError);
  expect((err as FsError).errno).toBe(Errno.EIO);
  expect((err as Error).message).toMatch(/signature does not verify/);
  expect(retries() - before).toBeGreaterThan(1);
});
