/**
 * The limit the S3 benchmark compares the mount with: a plain parallel S3 client, in a process of
 * its own as a user's would be. PUTs every MiB of FILE as an object under PREFIX with WRITES in
 * flight, then GETs them back with READS in flight. With HASH "md5" it sends each PUT's
 * Content-MD5 and checks each GET body's MD5, as the mount does; with "none" it hashes nothing
 * (the limit of the transfers alone). Prints "write MB/s read MB/s".
 *
 *   bun bench/plain-client.ts URL BUCKET PREFIX FILE WRITES READS md5|none   (credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)
 */
import { AwsClient } from "aws4fetch";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

const [url, bucket, prefix, file, writes, reads, hash] = process.argv.slice(2) as [string, string, string, string, string, string, string];
if (hash !== "md5" && hash !== "none") throw new Error(`HASH must be md5 or none, not ${hash}`);
const md5 = hash === "md5";
const aws = new AwsClient({ accessKeyId: process.env.AWS_ACCESS_KEY_ID!, secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY!, service: "s3", region: "us-east-1", retries: 0 });
const source = new Uint8Array(readFileSync(file));
const blocks = source.length >> 20;
const key = (i: number) => `${url}${bucket}/${prefix}${i.toString(16).padStart(8, "0")}`;
const pool = async (concurrency: number, fn: (i: number) => Promise<void>) => {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => { while (next < blocks) await fn(next++); }));
};
const rate = (started: number) => (source.length / ((performance.now() - started) / 1000) / 1e6).toFixed(1);

let started = performance.now();
await pool(Number(writes), async (i) => {
  const body = source.subarray(i << 20, (i + 1) << 20);
  const headers: Record<string, string> = md5 ? { "content-md5": createHash("md5").update(body).digest("base64") } : {};
  const r = await aws.fetch(key(i), { method: "PUT", body, headers });
  if (r.status !== 200) throw new Error(`PUT ${r.status}`);
  await r.arrayBuffer();
});
const write = rate(started);
started = performance.now();
await pool(Number(reads), async (i) => {
  const r = await aws.fetch(key(i));
  if (r.status !== 200) throw new Error(`GET ${r.status}`);
  const got = new Uint8Array(await r.arrayBuffer());
  if (md5) createHash("md5").update(got).digest();
});
console.log(write, rate(started));
