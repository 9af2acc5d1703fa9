/**
 * CopyObject on the bundled server (what `s3backer flatten` uses): signed like every request, the
 * metadata directives, a copy onto itself, a missing source, the source conditions; driven by our
 * own signed requests and by the AWS CLI and s3cmd.
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runAsync, tempDir } from "../helpers/disk.ts";
import { ACCESS, SECRET, embeddedPeer, rawClient, startEmbedded } from "../helpers/s3.ts";

const AWS = "/usr/bin/aws";
const S3CMD = "/usr/bin/s3cmd";
const server = startEmbedded(["copies"]);
const s3 = rawClient(embeddedPeer(server));
const dir = tempDir("copies");
afterAll(async () => {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});
const env = {
  AWS_ACCESS_KEY_ID: ACCESS, AWS_SECRET_ACCESS_KEY: SECRET, AWS_DEFAULT_REGION: "us-east-1",
  AWS_EC2_METADATA_DISABLED: "true", HOME: dir, PATH: process.env.PATH ?? "/usr/bin:/bin",
};
const text = (b: Uint8Array) => new TextDecoder().decode(b);

async function putSource(key: string, body: string) {
  const r = await s3("PUT", `copies/${key}`, {
    body, headers: { "content-type": "application/x-s3backer-block", "content-encoding": "deflate", "x-amz-meta-s3backer-hmac": '"abc"' },
  });
  expect(r.status).toBe(200);
}

test("a copy keeps the body, ETag, type, encoding and metadata; REPLACE takes them from the request", async () => {
  await putSource("dir/a b", "hello copy");
  const source = server.objects.get("copies", "dir/a b")!;
  const copied = await s3("PUT", "copies/other/c", { headers: { "x-amz-copy-source": `/copies/${encodeURIComponent("dir/a b")}` } });
  expect(copied.status).toBe(200);
  expect(text(copied.body)).toMatch(new RegExp(`<CopyObjectResult[^>]*><LastModified>[^<]+</LastModified><ETag>&quot;${source.etag}&quot;</ETag></CopyObjectResult>`));
  const got = await s3("GET", "copies/other/c");
  expect(text(got.body)).toBe("hello copy");
  expect(got.headers.get("etag")).toBe(`"${source.etag}"`);
  expect(got.headers.get("content-encoding")).toBe("deflate");
  expect(got.headers.get("content-type")).toBe("application/x-s3backer-block");
  expect(got.headers.get("x-amz-meta-s3backer-hmac")).toBe('"abc"');

  const replaced = await s3("PUT", "copies/other/d", {
    headers: { "x-amz-copy-source": "copies/dir/a%20b", "x-amz-metadata-directive": "REPLACE", "content-type": "text/plain", "x-amz-meta-s3backer-filesize": "42" },
  });
  expect(replaced.status).toBe(200);
  const d = await s3("HEAD", "copies/other/d");
  expect(d.headers.get("content-type")).toBe("text/plain");
  expect(d.headers.get("content-encoding")).toBeNull();
  expect(d.headers.get("x-amz-meta-s3backer-filesize")).toBe("42");
  expect(d.headers.get("x-amz-meta-s3backer-hmac")).toBeNull();
  expect(server.counters.copies).toBe(2);
});

test("refused: unsigned or badly signed, no such source, onto itself without REPLACE, a failed source condition", async () => {
  await putSource("src", "x");
  const before = server.counters.copies;
  const unsigned = await fetch(`${server.url}copies/dst`, { method: "PUT", headers: { "x-amz-copy-source": "/copies/src" } });
  expect(unsigned.status).toBe(403);
  // The copy source is a signed header: changing it after signing breaks the signature.
  const { AwsClient } = await import("aws4fetch");
  const aws = new AwsClient({ accessKeyId: ACCESS, secretAccessKey: SECRET, service: "s3", region: "us-east-1", retries: 0 });
  const signed = await aws.sign(`${server.url}copies/dst`, { method: "PUT", headers: { "x-amz-copy-source": "/copies/src" } });
  signed.headers.set("x-amz-copy-source", "/copies/other/c");
  expect((await fetch(signed)).status).toBe(403);

  const missing = await s3("PUT", "copies/dst", { headers: { "x-amz-copy-source": "/copies/nothing-here" } });
  expect(missing.status).toBe(404);
  expect(text(missing.body)).toMatch(/NoSuchKey/);
  expect((await s3("PUT", "copies/dst", { headers: { "x-amz-copy-source": "/nobucket/src" } })).status).toBe(404);
  expect((await s3("PUT", "copies/dst", { headers: { "x-amz-copy-source": "/copies" } })).status).toBe(400);
  const self = await s3("PUT", "copies/src", { headers: { "x-amz-copy-source": "/copies/src" } });
  expect(self.status).toBe(400);
  expect(text(self.body)).toMatch(/InvalidRequest/);
  const etag = server.objects.get("copies", "src")!.etag;
  expect((await s3("PUT", "copies/dst", { headers: { "x-amz-copy-source": "/copies/src", "x-amz-copy-source-if-match": '"0123"' } })).status).toBe(412);
  expect((await s3("PUT", "copies/dst", { headers: { "x-amz-copy-source": "/copies/src", "x-amz-copy-source-if-none-match": `"${etag}"` } })).status).toBe(412);
  expect(server.objects.get("copies", "dst")).toBeUndefined();
  expect(server.counters.copies).toBe(before);
  // Onto itself with REPLACE is how metadata is changed in place.
  expect((await s3("PUT", "copies/src", { headers: { "x-amz-copy-source": "/copies/src", "x-amz-metadata-directive": "REPLACE", "x-amz-meta-a": "1" } })).status).toBe(200);
  expect(server.objects.get("copies", "src")!.meta["x-amz-meta-a"]).toBe("1");
});

test.skipIf(!existsSync(AWS))("AWS CLI: s3api copy-object and s3 cp between keys", async () => {
  await putSource("cli/one", "from the cli");
  const run = async (...args: string[]) => {
    const r = await runAsync([AWS, "--endpoint-url", server.url, ...args], { env });
    if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr}`);
    return r.stdout;
  };
  const out = JSON.parse(await run("s3api", "copy-object", "--bucket", "copies", "--key", "cli/two", "--copy-source", "copies/cli/one")) as { CopyObjectResult: { ETag: string } };
  expect(out.CopyObjectResult.ETag).toBe(`"${server.objects.get("copies", "cli/one")!.etag}"`);
  await run("s3", "cp", "s3://copies/cli/two", "s3://copies/cli/three");
  expect(text(server.objects.get("copies", "cli/three")!.body)).toBe("from the cli");
});

test.skipIf(!existsSync(S3CMD))("s3cmd cp between keys", async () => {
  await putSource("s3cmd/one", "from s3cmd");
  const config = join(dir, "s3cfg");
  const host = new URL(server.url).host;
  writeFileSync(config, `[default]\naccess_key = ${ACCESS}\nsecret_key = ${SECRET}\nhost_base = ${host}\nhost_bucket = ${host}\nuse_https = False\nsignature_v2 = False\nbucket_location = us-east-1\n`);
  const r = await runAsync([S3CMD, "-c", config, "--no-progress", "cp", "s3://copies/s3cmd/one", "s3://copies/s3cmd/two"], { env });
  expect(r.code).toBe(0);
  expect(text(server.objects.get("copies", "s3cmd/two")!.body)).toBe("from s3cmd");
});
