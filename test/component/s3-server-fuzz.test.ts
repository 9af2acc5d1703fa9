/**
 * The bundled S3 server under hostile requests: random methods, paths, keys, queries, headers,
 * bodies and signatures (valid, wrong, or none), 10,000 of them from a printed seed (FUZZ_SEED=N
 * replays one, FUZZ_REQUESTS=N runs more). It must answer every client mistake with a 4xx S3 XML
 * error, never a 500, never a stack or a path of ours, never a line on stderr, and never write
 * outside its directory. Path traversal from a raw socket, with the paths a client's URL parser
 * would rewrite before sending (`..`, `%2e%2e`) or keep (`..%2F`): nothing is created outside the
 * server's directory, nor in any directory above it. And the cases found by hand: a key named
 * like another's metadata, aws-chunked uploads, another region.
 */
import { afterAll, expect, test } from "bun:test";
import { AwsClient } from "aws4fetch";
import net from "node:net";
import { mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { createHash, createHmac } from "node:crypto";
import { DirStorage } from "../../src/s3server/objects.ts";
import { S3Server } from "../../src/s3server/s3-server.ts";
import { amzDate, ALGORITHM, credentialScope, sign, signingKey } from "../../src/util/sigv4.ts";
import { seededRandom, tempDir } from "../helpers/data.ts";

const ACCESS = "FUZZACCESS";
const SECRET = "fuzz-secret-key";
const root = tempDir("fuzz");
const objectsDir = join(root, "objects");
mkdirSync(join(root, "outside"));
const server = new S3Server({ objects: new DirStorage(objectsDir), credentials: { [ACCESS]: { secretAccessKey: SECRET } }, buckets: ["fuzz"] });
server.start();
afterAll(async () => {
  await server.stop();
  rmSync(root, { recursive: true, force: true });
});

const aws = (secret = SECRET, region = "us-east-1", service = "s3") => new AwsClient({ accessKeyId: ACCESS, secretAccessKey: secret, region, service, retries: 0 });

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? [p + "/", ...files(p)] : [p];
  });
}

test("10,000 hostile requests: no 500, no stack, no stderr, nothing written outside the directory", async () => {
  const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
  const total = Number(process.env.FUZZ_REQUESTS ?? 10_000);
  console.log(`s3 server fuzz: seed ${seed} (replay with FUZZ_SEED=${seed}), ${total} requests`);
  const random = seededRandom(seed);
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(random() * 256));
  const text = (n: number) => Array.from({ length: n }, () => pick(["a", "Z", "0", "/", ".", "..", "%", "%ZZ", "%2F", "%00", " ", "é", "💥", "?", "#", "&", "=", "+", "\\", "<", "'"])).join("");
  const keys = () => pick([
    text(1 + Math.floor(random() * 20)), "..", "../../outside/x", "%2e%2e/%2e%2e/outside/y", "a.meta", "a", "a.json", "a.tmp",
    "x".repeat(1025), "é".repeat(600), "é".repeat(400), "%ZZ", "k%", "dir/", "s3backer-mounted", "",
  ]);
  const buckets = ["fuzz", "fuzz", "fuzz", "nope", "..", ".", "%2e%2e", "UPPER", "a", "x".repeat(300), ""];
  const methods = ["GET", "PUT", "HEAD", "DELETE", "POST", "PATCH", "OPTIONS", "FOO"];

  const problems: string[] = [];
  const stderr = process.stderr.write.bind(process.stderr);
  let stderrLines = 0;
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    if (String(chunk).includes("s3-server")) stderrLines++;
    return (stderr as (c: unknown, ...r: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stderr.write;
  let next = 0;
  const statuses = new Map<number, number>();
  try {
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < total) {
        next++;
        const method = pick(methods);
        const key = keys();
        const bucket = pick(buckets);
        const raw = random() < 0.5;
        const path = `/${bucket}${key || random() < 0.5 ? "/" : ""}${raw ? key : key.split("/").map(encodeURIComponent).join("/")}`;
        const query = pick(["", "", "?list-type=2", "?list-type=2&max-keys=abc", "?continuation-token=%%%", "?marker=zz&max-keys=-5", "?delete", "?uploads", `?${text(8)}`]);
        const headers: Record<string, string> = {};
        if (random() < 0.2) headers["content-md5"] = pick(["", "abc", Buffer.from(bytes(16)).toString("base64"), "=".repeat(30)]);
        if (random() < 0.2) headers.range = pick(["bytes=0-", "bytes=5-2", "bytes=-0", "bytes=abc", "bytes=99999999-", "bytes=0-0,1-1"]);
        if (random() < 0.1) headers["if-match"] = pick(["*", '"x"', ""]);
        if (random() < 0.1) headers["if-none-match"] = pick(["*", '"x"']);
        if (random() < 0.1) headers["content-encoding"] = pick(["aws-chunked", "deflate", "aws-chunked,gzip"]);
        if (random() < 0.1) headers["x-amz-meta-s3backer-hmac"] = text(10).replace(/[^\x20-\x7e]/g, "x");
        const body = method === "GET" || method === "HEAD" || method === "FOO" ? undefined : random() < 0.1 ? bytes(2000) : bytes(Math.floor(random() * 64));
        const url = `${server.url.replace(/\/$/, "")}${path}${query}`;
        let request: Request;
        try {
          const how = random();
          if (how < 0.25) {
            // Unsigned, or with a garbage Authorization header.
            if (random() < 0.5) headers.authorization = pick(["AWS4-HMAC-SHA256 garbage", `AWS4-HMAC-SHA256 Credential=${ACCESS}/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=${"0".repeat(64)}`, "Basic abc"]);
            request = new Request(url, { method, headers, body });
          } else {
            const client = how < 0.35 ? aws("wrong-secret") : how < 0.4 ? aws(SECRET, pick(["eu-west-1", "", "us-east-1x"])) : how < 0.45 ? aws(SECRET, "us-east-1", "iam") : aws();
            const sha = random() < 0.1 ? pick(["STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "UNSIGNED-PAYLOAD", "nope", "0".repeat(64)]) : undefined;
            if (sha) headers["x-amz-content-sha256"] = sha;
            request = await client.sign(url, { method, headers, body });
          }
        } catch {
          continue; // not even a request a client could send
        }
        let r: Response;
        try {
          r = await fetch(request, { decompress: false } as RequestInit); // bodies as stored
        } catch (err) {
          problems.push(`${method} ${path}${query}: no answer (${(err as Error).message})`);
          continue;
        }
        const answer = method === "HEAD" ? "" : await r.text();
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        // 501 NotImplemented names an S3 feature we lack (ListBuckets, DeleteObjects): not a failure.
        if (r.status >= 500 && !(r.status === 501 && answer.includes("NotImplemented"))) problems.push(`${method} ${path}${query}: ${r.status} ${answer.slice(0, 200)}`);
        if (r.status >= 400 && method !== "HEAD" && !answer.startsWith("<?xml") && r.status !== 413) problems.push(`${method} ${path}${query}: ${r.status} is not an S3 XML error: ${answer.slice(0, 100)}`);
        if (/\n\s+at |\.ts:\d|node_modules|\/work\/|\/tmp\//.test(answer)) problems.push(`${method} ${path}${query}: internals in the answer: ${answer.slice(0, 200)}`);
      }
    }));
  } finally {
    process.stderr.write = stderr;
  }
  console.log(`  statuses: ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}`);
  expect(problems.slice(0, 10)).toEqual([]);
  expect(stderrLines).toBe(0);
  expect(files(root).filter((p) => !p.startsWith(objectsDir)).sort()).toEqual([join(root, "outside") + "/"]);
  expect(statuses.get(200) ?? 0).toBeGreaterThan(100); // some requests were good ones
}, 120_000);

test("a key named like another's metadata ('a.meta') is an object of its own", async () => {
  const c = aws();
  const base = server.url.replace(/\/$/, "");
  expect((await c.fetch(`${base}/fuzz/obj`, { method: "PUT", body: "data" })).status).toBe(200);
  expect((await c.fetch(`${base}/fuzz/obj.meta`, { method: "PUT", body: "{\"etag\":\"forged\"}" })).status).toBe(200);
  expect((await c.fetch(`${base}/fuzz/obj.json`, { method: "PUT", body: "x" })).status).toBe(200);
  const r = await c.fetch(`${base}/fuzz/obj`);
  expect([r.status, await r.text(), r.headers.get("etag")]).toEqual([200, "data", `"${createHash("md5").update("data").digest("hex")}"`]);
});

test("aws-chunked uploads are stored decoded; a chunk with a wrong signature is refused", async () => {
  const base = server.url.replace(/\/$/, "");
  const data = new TextEncoder().encode("hello, chunked world".repeat(100));
  async function upload(name: string, tamper: boolean) {
    const headers = { "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "content-encoding": "aws-chunked", "x-amz-decoded-content-length": String(data.length) };
    const signed = await aws().sign(`${base}/fuzz/${name}`, { method: "PUT", headers });
    // The chunks are signed with the request's own time (a second may have turned meanwhile).
    const datetime = signed.headers.get("x-amz-date")!;
    const date = datetime.slice(0, 8);
    const scope = `${date}/us-east-1/s3/aws4_request`;
    const key = signingKey(SECRET, date, "us-east-1", "s3");
    const sign = (prev: string, chunk: Uint8Array) =>
      createHmac("sha256", key).update(["AWS4-HMAC-SHA256-PAYLOAD", datetime, scope, prev, createHash("sha256").update("").digest("hex"), createHash("sha256").update(chunk).digest("hex")].join("\n")).digest("hex");
    const seed = /Signature=([0-9a-f]{64})/.exec(signed.headers.get("authorization")!)![1]!;
    const parts: (string | Uint8Array)[] = [];
    let prev = seed;
    for (const chunk of [data.subarray(0, 1000), data.subarray(1000), new Uint8Array(0)]) {
      const sig = sign(prev, chunk);
      prev = sig;
      parts.push(`${chunk.length.toString(16)};chunk-signature=${tamper && chunk.length === 1000 ? "0".repeat(64) : sig}\r\n`, chunk, "\r\n");
    }
    const body = Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p) : Buffer.from(p))));
    return fetch(new Request(signed.url, { method: "PUT", headers: signed.headers, body }));
  }
  expect((await upload("chunked", false)).status).toBe(200);
  const back = await aws().fetch(`${base}/fuzz/chunked`);
  expect(new Uint8Array(await back.arrayBuffer())).toEqual(data);
  expect(back.headers.get("content-encoding")).toBeNull();
  const refused = await upload("tampered", true);
  expect(refused.status).toBe(403);
  expect(await refused.text()).toMatch(/SignatureDoesNotMatch/);
  expect((await aws().fetch(`${base}/fuzz/tampered`)).status).toBe(404);
});

test("a signature for another region or service is refused", async () => {
  const base = server.url.replace(/\/$/, "");
  const r = await aws(SECRET, "eu-west-1").fetch(`${base}/fuzz/obj`);
  expect(r.status).toBe(400);
  expect(await r.text()).toMatch(/AuthorizationHeaderMalformed.*region &apos;eu-west-1&apos; is wrong/s);
  expect((await aws(SECRET, "us-east-1", "iam").fetch(`${base}/fuzz/obj`)).status).toBe(400);
});

/**
 * A request sent as given over a raw socket (the target is not normalised, as fetch would), signed
 * for the path the server will see: its URL parser drops `..` and `%2e%2e` segments as ours does.
 */
async function rawRequest(method: string, target: string, body = new Uint8Array(0)): Promise<{ status: number; body: string }> {
  const base = new URL(server.url);
  const url = new URL(`${base.origin}${target}`);
  const datetime = amzDate(Date.now());
  const scope = credentialScope(datetime.slice(0, 8), "us-east-1", "s3");
  const payloadHash = createHash("sha256").update(body).digest("hex");
  const headers = [["x-amz-content-sha256", payloadHash], ["x-amz-date", datetime]] as const;
  const signed = sign({ method, url, headers, payloadHash }, signingKey(SECRET, datetime.slice(0, 8), "us-east-1", "s3"), datetime, scope)!;
  const head = [
    `${method} ${target} HTTP/1.1`, `host: ${url.host}`, ...headers.map(([n, v]) => `${n}: ${v}`),
    `authorization: ${ALGORITHM} Credential=${ACCESS}/${scope}, SignedHeaders=${signed.signedHeaders}, Signature=${signed.signature}`,
    `content-length: ${body.length}`, "connection: close", "", "",
  ].join("\r\n");
  const answer = await new Promise<string>((resolve, reject) => {
    let got = "";
    const c = net.connect(Number(base.port), base.hostname, () => c.write(Buffer.concat([Buffer.from(head), body])));
    c.on("data", (d) => (got += d));
    c.on("close", () => resolve(got));
    c.on("error", reject);
  });
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0), body: answer.slice(answer.indexOf("\r\n\r\n") + 4) };
}

test("path traversal from a raw socket: keys with .. segments are objects in the bucket; nothing is created outside the directory or above it", async () => {
  const marker = `s3b-escape-${process.pid}`;
  const up = (n: number, sep: string) => Array.from({ length: n }, () => `..${sep}`).join("");
  const targets = [
    "/fuzz/%2e%2e/%2e%2e/outside/y", // rewritten by URL parsers: /outside/y, a bucket that does not exist
    "/fuzz/../../outside/y",
    "/fuzz/..%2F..%2Foutside%2Fy", // kept: the key is ../../outside/y
    `/fuzz/${up(3, "%2F")}${marker}-a`, // the directory above the server's
    `/fuzz/%2e%2e%2f%2e%2e%2f%2e%2e%2f${marker}-b`,
    `/fuzz/a%2F${up(4, "%2F")}${marker}-c`,
    `/fuzz/${up(12, "%2F")}tmp%2F${marker}-d`, // up to / and down to /tmp
    `/fuzz/..%5C..%5C..%5C${marker}-e`,
    `/fuzz/${up(3, "%2F")}`, // a key naming a directory
  ];
  /** Nothing in the server's root but its objects and the "outside" folder, nor in any directory from the bucket's up to /. */
  const nothingOutside = (when: string) => {
    expect({ when, outside: files(root).filter((p) => !p.startsWith(objectsDir)).sort() }).toEqual({ when, outside: [join(root, "outside") + "/"] });
    for (let dir = join(objectsDir, "fuzz"); ; dir = dirname(dir)) {
      expect({ when, dir, found: readdirSync(dir).filter((n) => n.includes(marker)) }).toEqual({ when, dir, found: [] });
      if (dir === "/") break;
    }
  };
  const problems: string[] = [];
  const statuses: string[] = [];
  try {
    for (const [i, target] of targets.entries()) {
      const put = await rawRequest("PUT", target, new TextEncoder().encode(`payload ${i}`));
      const get = await rawRequest("GET", target);
      statuses.push(`${target}: PUT ${put.status} GET ${get.status}`);
      // Stored, it is an object of the bucket like any other: it reads back.
      if (put.status === 200 && (get.status !== 200 || get.body !== `payload ${i}`)) problems.push(`${target}: stored, then GET ${get.status} ${get.body.slice(0, 80)}`);
      if ([put.status, get.status].includes(500)) problems.push(`${target}: a 500`);
    }
    // DeleteObjects and a multipart upload with such keys: contained too.
    const xml = new TextEncoder().encode(`<Delete>${targets.map((t, i) => `<Object><Key>../../${marker}-del${i}/${t}</Key></Object>`).join("")}</Delete>`);
    expect((await rawRequest("POST", "/fuzz?delete", xml)).status).not.toBe(500);
    expect((await rawRequest("POST", `/fuzz/${up(3, "%2F")}${marker}-mp?uploads`)).status).toBe(200);
    console.log(`  ${statuses.join("\n  ")}`);
    nothingOutside("after the PUTs");
    for (const target of targets) if ((await rawRequest("DELETE", target)).status === 500) problems.push(`${target}: DELETE 500`);
    nothingOutside("after the DELETEs");
    expect(problems).toEqual([]);
  } finally {
    // What a broken server put above its directory goes, so that a failure leaves nothing behind.
    for (let dir = objectsDir; dir !== "/"; dir = dirname(dir)) {
      for (const n of readdirSync(dir).filter((n) => n.includes(marker))) rmSync(join(dir, n), { recursive: true, force: true });
    }
    for (const n of readdirSync("/tmp").filter((n) => n.includes(marker))) rmSync(join("/tmp", n), { recursive: true, force: true });
  }
});
