/** S3 flags that change what goes over the wire, through mounts: TLS, headers, anonymous access, secrecy. */
import { afterAll, afterEach, expect, test } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { S3Server } from "../../src/s3server/s3-server.ts";
import { cleanupDisks, mountWith, runAsync, tempDir } from "../helpers/disk.ts";
import { ACCESS, SECRET, embeddedPeer, freshBucket, peerArgs } from "../helpers/s3.ts";

const dirs: string[] = [];
const servers: S3Server[] = [];
afterEach(async () => {
  await cleanupDisks();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
afterAll(async () => {
  for (const s of servers) await s.stop();
});

function workDir(tag: string) {
  const d = tempDir(tag);
  dirs.push(d);
  return d;
}

function server(opts: Partial<ConstructorParameters<typeof S3Server>[0]> = {}): S3Server {
  const s = new S3Server({ credentials: { [ACCESS]: { secretAccessKey: SECRET } }, ...opts });
  s.start();
  servers.push(s);
  return s;
}

test("https: a self-signed server is refused, accepted with --insecure or with --cacert", async () => {
  const dir = workDir("tls");
  const [cert, key] = [join(dir, "cert.pem"), join(dir, "key.pem")];
  const gen = await runAsync(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert]);
  expect(gen.code).toBe(0);
  const tls = server({ tls: { cert: readFileSync(cert, "utf8"), key: readFileSync(key, "utf8") }, buckets: ["sec"] });
  const peer = embeddedPeer(tls);
  expect(peer.url).toStartWith("https://");
  const refused = await runAsync(["dist/s3backer", ...peerArgs(peer), "--size=1M", "--maxRetryPause=0", "sec", join(dir, "nowhere")]);
  expect(refused.code).toBe(1);
  for (const flag of ["--insecure", `--cacert=${cert}`]) {
    const disk = await mountWith([...peerArgs(peer), "--size=1M", "--ssl", flag, "sec"], join(dir, flag.slice(2, 8)), true);
    expect((await readFile(disk.file)).length).toBe(1 << 20);
    await disk.unmount();
  }
});

test("ACL, storage class and server-side encryption headers go with every block PUT", async () => {
  const seen: Headers[] = [];
  const s = server({ buckets: ["hdr"], onRequest: (method, key, headers) => { if (method === "PUT" && /^[0-9a-f]{8}$/.test(key)) seen.push(headers); } });
  const dir = workDir("hdr");
  const disk = await mountWith([...peerArgs(embeddedPeer(s)), "--size=1M", "--blockSize=4k", "--accessType=public-read", "--storageClass=STANDARD_IA", "--sse=aws:kms", "--sse-key-id=key-1", "hdr"], dir, true);
  await runAsync(["dd", "if=/dev/urandom", `of=${disk.file}`, "bs=4k", "count=2", "conv=notrunc,fsync"]);
  await disk.unmount();
  expect(seen.length).toBeGreaterThanOrEqual(2);
  for (const h of seen) {
    expect(h.get("x-amz-acl")).toBe("public-read");
    expect(h.get("x-amz-storage-class")).toBe("STANDARD_IA");
    expect(h.get("x-amz-server-side-encryption")).toBe("aws:kms");
    expect(h.get("x-amz-server-side-encryption-aws-kms-key-id")).toBe("key-1");
    expect(h.get("content-md5")).toMatch(/^[A-Za-z0-9+/]{22}==$/);
  }
});

test("no credentials at all: unsigned requests read a public bucket", async () => {
  const s = server({ anonymousRead: true, buckets: ["pub"] });
  const peer = embeddedPeer(s);
  const dir = workDir("anon");
  const writer = await mountWith([...peerArgs(peer), "--size=1M", "--blockSize=4k", "pub"], join(dir, "w"), true);
  await runAsync(["sh", "-c", `head -c 4096 /dev/zero | tr '\\0' 'x' | dd of=${writer.file} bs=4k seek=1 conv=notrunc,fsync status=none`]);
  await writer.unmount();
  const env = { PATH: process.env.PATH!, HOME: dir }; // no ~/.s3backer_passwd, no AWS_* variables
  const disk = await mountWith([`--baseURL=${peer.url}`, "--readOnly", "pub"], join(dir, "r"), true, "", env);
  expect(new TextDecoder().decode((await readFile(disk.file)).subarray(4096, 8192))).toBe("x".repeat(4096));
  await disk.unmount();
  // Writing needs credentials: without them the mount (which sets the mounted flag) is refused.
  const rw = await runAsync(["dist/s3backer", `--baseURL=${peer.url}`, "pub", join(dir, "w", "mnt")], { env });
  expect(rw.code).toBe(1);
  expect(rw.stderr).toMatch(/HTTP 403 AccessDenied/);
});

test("the secret key appears nowhere: not in the debug log, not in the stats file", async () => {
  const peer = embeddedPeer(server());
  const bucket = await freshBucket(peer, "secret");
  const dir = workDir("secret");
  const disk = await mountWith([...peerArgs(peer), "--debug", "--debug-http", "--size=1M", "--blockSize=4k", bucket], dir, true);
  await runAsync(["dd", "if=/dev/urandom", `of=${disk.file}`, "bs=4k", "count=1", "conv=notrunc,fsync"]);
  const stats = await readFile(disk.stats, "utf8");
  await disk.unmount();
  const log = await readFile(join(dir, "log"), "utf8");
  expect(log).toMatch(/PUT http:\/\/.* -> 200/);
  for (const text of [log, stats]) expect(text).not.toContain(SECRET);
});
