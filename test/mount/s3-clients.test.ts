/**
 * The bundled S3 server driven by the clients a user has for looking at or cleaning a disk's
 * bucket: Debian's AWS CLI v2 and s3cmd. Listing buckets, multipart copies in and out, presigned
 * URLs (expiry honoured, tampering refused), bulk deletes, removing buckets.
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runAsync, tempDir } from "../helpers/disk.ts";
import { ACCESS, SECRET, startEmbedded } from "../helpers/s3.ts";

const AWS = "/usr/bin/aws";
const S3CMD = "/usr/bin/s3cmd";
const server = startEmbedded(["clients"]);
const dir = tempDir("clients");
afterAll(async () => {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

const big = join(dir, "big");
writeFileSync(big, Buffer.concat(Array.from({ length: 320 }, (_, i) => Buffer.alloc(65536, i)))); // 20 MiB
const env = {
  AWS_ACCESS_KEY_ID: ACCESS, AWS_SECRET_ACCESS_KEY: SECRET, AWS_DEFAULT_REGION: "us-east-1",
  AWS_EC2_METADATA_DISABLED: "true", HOME: dir, PATH: process.env.PATH ?? "/usr/bin:/bin",
};
const aws = (...args: string[]) => runAsync([AWS, "--endpoint-url", server.url, ...args], { env });
const ok = async (p: Promise<{ code: number; stdout: string; stderr: string }>) => {
  const r = await p;
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr}`);
  return r.stdout;
};

test.skipIf(!existsSync(AWS))("AWS CLI: ls, mb, multipart cp both ways, presign, rm --recursive (DeleteObjects), rb", async () => {
  expect(await ok(aws("s3", "ls"))).toMatch(/ clients\n/);
  await ok(aws("s3", "mb", "s3://awscli"));
  await ok(aws("s3", "cp", big, "s3://awscli/dir/big"));
  expect(server.objects.get("awscli", "dir/big")!.etag).toMatch(/^[0-9a-f]{32}-3$/); // 8 MiB parts
  await ok(aws("s3", "cp", join(dir, "big"), "s3://awscli/dir/copy"));
  expect(await ok(aws("s3", "ls", "--recursive", "s3://awscli"))).toMatch(/20971520 dir\/big/);
  await ok(aws("s3", "cp", "s3://awscli/dir/big", join(dir, "back")));
  expect(readFileSync(join(dir, "back")).equals(readFileSync(big))).toBe(true);

  // Multipart by hand: parts listed, then aborted.
  const created = JSON.parse(await ok(aws("s3api", "create-multipart-upload", "--bucket", "awscli", "--key", "half"))) as { UploadId: string };
  await ok(aws("s3api", "upload-part", "--bucket", "awscli", "--key", "half", "--part-number", "1", "--upload-id", created.UploadId, "--body", big));
  const parts = JSON.parse(await ok(aws("s3api", "list-parts", "--bucket", "awscli", "--key", "half", "--upload-id", created.UploadId))) as { Parts: { Size: number }[] };
  expect(parts.Parts.map((p) => p.Size)).toEqual([20971520]);
  await ok(aws("s3api", "abort-multipart-upload", "--bucket", "awscli", "--key", "half", "--upload-id", created.UploadId));
  expect((await aws("s3api", "list-parts", "--bucket", "awscli", "--key", "half", "--upload-id", created.UploadId)).stderr).toMatch(/NoSuchUpload/);

  const url = (await ok(aws("s3", "presign", "s3://awscli/dir/big", "--expires-in", "3600"))).trim();
  const got = await fetch(url);
  expect(got.status).toBe(200);
  expect(Buffer.from(await got.arrayBuffer()).equals(readFileSync(big))).toBe(true);
  const tampered = url.replace(/X-Amz-Signature=([0-9a-f])/, (_, c: string) => `X-Amz-Signature=${c === "0" ? "1" : "0"}`);
  expect((await fetch(tampered)).status).toBe(403);
  expect((await fetch(url.replace("dir/big", "dir/copy"))).status).toBe(403); // signed for another key
  // Another URL for the expiry: a slow client start on a loaded machine cannot expire the first.
  const short = (await ok(aws("s3", "presign", "s3://awscli/dir/big", "--expires-in", "1"))).trim();
  await Bun.sleep(2000);
  const expired = await fetch(short);
  expect(expired.status).toBe(403);
  expect(await expired.text()).toMatch(/expired/);

  expect((await aws("s3", "rb", "s3://awscli")).stderr).toMatch(/BucketNotEmpty/);
  server.counters.reset();
  const deleted = JSON.parse(await ok(aws("s3api", "delete-objects", "--bucket", "awscli", "--delete", '{"Objects":[{"Key":"dir/big"},{"Key":"nonexistent"}]}'))) as { Deleted: { Key: string }[] };
  expect(deleted.Deleted.map((d) => d.Key).sort()).toEqual(["dir/big", "nonexistent"]);
  expect(server.counters.requests.BULK_DELETE).toBe(1);
  await ok(aws("s3", "rm", "--recursive", "s3://awscli"));
  await ok(aws("s3", "rb", "s3://awscli"));
  expect(await ok(aws("s3", "ls"))).not.toMatch(/awscli/);
});

test.skipIf(!existsSync(S3CMD))("s3cmd: ls, mb, multipart put, get, info, del --recursive, rb", async () => {
  const config = join(dir, "s3cfg");
  const host = new URL(server.url).host;
  writeFileSync(config, `[default]\naccess_key = ${ACCESS}\nsecret_key = ${SECRET}\nhost_base = ${host}\nhost_bucket = ${host}\nuse_https = False\nsignature_v2 = False\nbucket_location = us-east-1\n`);
  const s3cmd = (...args: string[]) => ok(runAsync([S3CMD, "-c", config, "--no-progress", ...args], { env }));
  expect(await s3cmd("ls")).toMatch(/s3:\/\/clients/);
  await s3cmd("mb", "s3://s3cmd");
  await s3cmd("put", "--multipart-chunk-size-mb=5", big, "s3://s3cmd/big");
  expect(server.objects.get("s3cmd", "big")!.etag).toMatch(/-4$/);
  await s3cmd("put", big, "s3://s3cmd/other");
  await s3cmd("get", "--force", "s3://s3cmd/big", join(dir, "s3cmd-back"));
  expect(readFileSync(join(dir, "s3cmd-back")).equals(readFileSync(big))).toBe(true);
  expect(await s3cmd("info", "s3://s3cmd/big")).toMatch(/File size: 20971520/);
  server.counters.reset();
  await s3cmd("del", "--recursive", "--force", "s3://s3cmd");
  expect(server.counters.requests.BULK_DELETE).toBe(1);
  expect(server.objects.keys("s3cmd")).toEqual([]);
  await s3cmd("rb", "s3://s3cmd");
  expect(await s3cmd("ls")).not.toMatch(/s3:\/\/s3cmd/);
});
