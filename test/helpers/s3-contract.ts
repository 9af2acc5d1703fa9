/**
 * The S3 behaviour s3backer relies on, as tests to run against one server: every server we have
 * must pass them (test/component/s3-contract.test.ts: the embedded one; test/mount/s3-contract.test.ts:
 * Ceph RGW). A difference between servers is a capability-table entry.
 */
import { expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { AwsClient } from "aws4fetch";
import { freshBucket, rawClient, type Peer } from "./s3.ts";

const md5 = (b: Uint8Array | string) => createHash("md5").update(b).digest();

/** Registers the contract's tests for `peer` (in the caller's describe). */
export function s3ContractTests(peer: Peer): void {
  const s3 = rawClient(peer);

  test("PUT, GET, HEAD, DELETE with metadata and ETag = MD5", async () => {
    const bucket = await freshBucket(peer, "crud");
    const body = new Uint8Array(5000).map((_, i) => i * 7);
    const put = await s3("PUT", `${bucket}/obj`, { body, headers: { "x-amz-meta-s3backer-blocksize": "4096", "content-type": "application/x-s3backer-block", "content-md5": md5(body).toString("base64") } });
    expect(put.status).toBe(200);
    expect(put.headers.get("etag")).toBe(`"${md5(body).toString("hex")}"`);
    const get = await s3("GET", `${bucket}/obj`);
    expect(get.status).toBe(200);
    expect(get.body).toEqual(body);
    expect(get.headers.get("x-amz-meta-s3backer-blocksize")).toBe("4096");
    const head = await s3("HEAD", `${bucket}/obj`);
    expect([head.status, head.headers.get("content-length"), head.headers.get("x-amz-meta-s3backer-blocksize")]).toEqual([200, "5000", "4096"]);
    expect((await s3("DELETE", `${bucket}/obj`)).status).toBe(204);
    expect((await s3("GET", `${bucket}/obj`)).status).toBe(404);
    expect((await s3("HEAD", `${bucket}/obj`)).status).toBe(404);
    expect((await s3("DELETE", `${bucket}/obj`)).status).toBe(204); // deleting nothing is fine
  });

  test("a wrong Content-MD5 is refused with BadDigest and stores nothing", async () => {
    const bucket = await freshBucket(peer, "md5");
    const r = await s3("PUT", `${bucket}/x`, { body: "hello", headers: { "content-md5": md5("other").toString("base64") } });
    expect(r.status).toBe(400);
    expect(new TextDecoder().decode(r.body)).toContain("BadDigest");
    expect((await s3("GET", `${bucket}/x`)).status).toBe(404);
  });

  test("a wrong secret gets 403 SignatureDoesNotMatch", async () => {
    const bucket = await freshBucket(peer, "sig");
    const bad = new AwsClient({ accessKeyId: peer.accessKey, secretAccessKey: "not-the-secret", service: "s3", region: "us-east-1", retries: 0 });
    const r = await bad.fetch(`${peer.url}${bucket}/x`, { method: "PUT", body: "data" });
    expect(r.status).toBe(403);
    expect(await r.text()).toContain("SignatureDoesNotMatch");
  });

  test("conditional requests: If-None-Match: * on PUT, If-Match on PUT, 304 and 412 on GET", async () => {
    const bucket = await freshBucket(peer, "cond");
    expect((await s3("PUT", `${bucket}/flag`, { body: "a", headers: { "if-none-match": "*" } })).status).toBe(200);
    expect((await s3("PUT", `${bucket}/flag`, { body: "b", headers: { "if-none-match": "*" } })).status).toBe(412);
    const etag = md5("a").toString("hex");
    const quoted = peer.unquotedIfMatch ? etag : `"${etag}"`;
    expect((await s3("PUT", `${bucket}/flag`, { body: "c", headers: { "if-match": quoted } })).status).toBe(200);
    expect((await s3("PUT", `${bucket}/flag`, { body: "d", headers: { "if-match": quoted } })).status).toBe(412);
    const cEtag = `"${md5("c").toString("hex")}"`;
    expect((await s3("GET", `${bucket}/flag`, { headers: { "if-none-match": cEtag } })).status).toBe(304);
    expect((await s3("GET", `${bucket}/flag`, { headers: { "if-match": `"${etag}"` } })).status).toBe(412);
    expect(new TextDecoder().decode((await s3("GET", `${bucket}/flag`)).body)).toBe("c");
  });

  test("Range GET", async () => {
    const bucket = await freshBucket(peer, "range");
    await s3("PUT", `${bucket}/r`, { body: "0123456789" });
    const r = await s3("GET", `${bucket}/r`, { headers: { range: "bytes=2-5" } });
    expect(r.status).toBe(206);
    expect(new TextDecoder().decode(r.body)).toBe("2345");
    expect(r.headers.get("content-range")).toBe("bytes 2-5/10");
  });

  test("ListObjectsV2: prefix, delimiter, max-keys and continuation tokens; v1 with marker", async () => {
    const bucket = await freshBucket(peer, "list");
    const keys = Array.from({ length: 25 }, (_, i) => `p/${i.toString(16).padStart(8, "0")}`);
    await Promise.all([...keys, "other", "p/sub/x"].map((k) => s3("PUT", `${bucket}/${k}`, { body: "x" })));
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const q = new URLSearchParams({ "list-type": "2", prefix: "p/", delimiter: "/", "max-keys": "10" });
      if (token) q.set("continuation-token", token);
      const xml = new TextDecoder().decode((await s3("GET", `${bucket}?${q}`)).body);
      seen.push(...[...xml.matchAll(/<Key>([^<]+)<\/Key>/g)].map((m) => m[1]!));
      if (xml.includes("<Prefix>p/sub/</Prefix>")) seen.push("(p/sub/)");
      token = /<IsTruncated>true<\/IsTruncated>/.test(xml) ? /<NextContinuationToken>([^<]+)</.exec(xml)![1] : undefined;
      pages++;
    } while (token);
    expect(seen.filter((k) => k !== "(p/sub/)")).toEqual(keys);
    expect(seen).toContain("(p/sub/)");
    expect(pages).toBe(3);
    const after = new TextDecoder().decode((await s3("GET", `${bucket}?${new URLSearchParams({ "list-type": "2", prefix: "p/", "start-after": keys[22]!, delimiter: "/" })}`)).body);
    expect([...after.matchAll(/<Key>([^<]+)<\/Key>/g)].map((m) => m[1])).toEqual(keys.slice(23));
    const v1 = new TextDecoder().decode((await s3("GET", `${bucket}?${new URLSearchParams({ prefix: "p/", marker: keys[20]!, delimiter: "/" })}`)).body);
    expect([...v1.matchAll(/<Key>([^<]+)<\/Key>/g)].map((m) => m[1])).toEqual(keys.slice(21));
  });

  test("a missing bucket is 404 NoSuchBucket", async () => {
    const r = await s3("GET", "no-such-bucket-here-42/x");
    expect(r.status).toBe(404);
    expect(new TextDecoder().decode(r.body)).toContain("NoSuchBucket");
  });
}
