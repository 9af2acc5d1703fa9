/**
 * The key object's conditional writes (object/s3/key-object.ts) against the embedded server and,
 * when it is running, Ceph RGW (whose If-Match takes only an unquoted ETag): made once, replaced
 * only from the version read, a retried PUT whose answer was lost known as ours, and a server that
 * refuses conditions written to all the same with a warning.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { Logger } from "../../src/log.ts";
import { S3Client } from "../../src/object/s3/s3-client.ts";
import { S3KeyObject } from "../../src/object/s3/key-object.ts";
import { md5Hex } from "../../src/util/md5.ts";
import { dropBucket, embeddedPeer, freshBucket, rgwPeer, startEmbedded, type Peer } from "../helpers/s3.ts";

const server = startEmbedded();
const embedded = embeddedPeer(server);
const rgw = rgwPeer();
const peers: Peer[] = [embedded, ...(rgw ? [rgw] : [])];
if (!rgw) test.skip("key object: ceph-rgw (S3_RGW_URL is not set)", () => {});
const made: [Peer, string][] = [];
afterAll(async () => {
  for (const [peer, bucket] of made) await dropBucket(peer, bucket);
  server.stop();
});

async function keyObject(peer: Peer, timeoutMs = 5000) {
  const bucket = await freshBucket(peer, "keyobj");
  made.push([peer, bucket]);
  const client = new S3Client({
    baseURL: peer.url, bucket, vhost: false, region: "us-east-1",
    credentials: { origin: "test", get: async () => ({ accessKeyId: peer.accessKey, secretAccessKey: peer.secretKey }) },
    timeoutMs, initialRetryPauseMs: 5, maxRetryPauseMs: 2000, insecure: false, caFile: undefined,
    maxUploadBps: 0, maxDownloadBps: 0, debugHttp: false, keepAlive: true, log: new Logger({ kind: "file", path: "/dev/null" }),
  });
  return { key: new S3KeyObject(client, bucket, "disk/"), close: () => client.close() };
}

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined) => (b ? new TextDecoder().decode(b) : undefined);

for (const peer of peers) {
  describe(peer.name, () => {
    test("made once: a second maker finds the first one's", async () => {
      const { key, close } = await keyObject(peer);
      expect(await key.read()).toBeUndefined();
      expect(await key.create(bytes("first"))).toBe(true);
      expect(await key.create(bytes("second"))).toBe(false);
      expect(text((await key.read())?.body)).toBe("first");
      expect(key.where).toMatch(/\/disk\/s3backer-key$/);
      close();
    });

    test("replaced only from the version read: a writer holding an older one is told, and changes nothing", async () => {
      const { key, close } = await keyObject(peer);
      await key.create(bytes("v1"));
      const v1 = (await key.read())!;
      expect(v1.etag).toBe(md5Hex(bytes("v1")));
      expect(await key.replace(bytes("v2"), v1.etag)).toBe(true);
      expect(await key.replace(bytes("v3"), v1.etag)).toBe(false);
      expect(text((await key.read())?.body)).toBe("v2");
      expect(key.warnings).toEqual([]);
      await key.delete();
      expect(await key.read()).toBeUndefined();
      close();
    });
  });
}

test("a replace whose answer was lost: the retry finds the condition failed on its own object, and counts it done", async () => {
  const { key, close } = await keyObject(embedded, 500);
  await key.create(bytes("v1"));
  const v1 = (await key.read())!;
  server.setFaults({ lostPutAnswers: 1, keyPattern: /s3backer-key$/ });
  expect(await key.replace(bytes("v2"), v1.etag)).toBe(true);
  expect(server.faults.lostPutAnswers).toBe(0);
  expect(text((await key.read())?.body)).toBe("v2");
  server.reset();
  close();
});

test("a server that refuses conditional PUT: written all the same, with a warning", async () => {
  const { key, close } = await keyObject(embedded);
  server.setFaults({ conditionalPut: "refuse" });
  expect(await key.create(bytes("v1"))).toBe(true);
  expect(await key.replace(bytes("v2"), md5Hex(bytes("v1")))).toBe(true);
  expect(key.warnings).toHaveLength(2);
  expect(key.warnings[0]).toMatch(/does not support conditional PUT/);
  server.reset();
  close();
});
