/**
 * The fault proxy of test/helpers/fault-proxy.ts, fault by fault, with plain signed requests
 * through it to the bundled server: each fault does what it says, and counts that it fired.
 */
import { afterAll, afterEach, expect, test } from "bun:test";
import net from "node:net";
import { FaultProxy } from "../helpers/fault-proxy.ts";
import { ACCESS, freshBucket, rawClient, SECRET, startEmbedded, type Peer } from "../helpers/s3.ts";
import { pattern } from "../helpers/data.ts";

const server = startEmbedded();
const proxy = await FaultProxy.start({ upstream: server.url, credentials: { accessKey: ACCESS, secretKey: SECRET } });
const viaProxy: Peer = { name: "proxy", url: proxy.url, accessKey: ACCESS, secretKey: SECRET, embedded: server, unquotedIfMatch: false };
const s3 = rawClient(viaProxy);
const bucket = await freshBucket(viaProxy, "proxy");
proxy.reset();
afterEach(() => proxy.reset());
afterAll(async () => {
  await proxy.stop();
  await server.stop();
});

const body = (n: number) => pattern(1000, n);
async function put(key: string, data: Uint8Array) {
  expect((await s3("PUT", `${bucket}/${key}`, { body: data })).status).toBe(200);
}
/** A GET whose failure (a broken connection) is an answer too. */
async function get(key: string) {
  try {
    return await s3("GET", `${bucket}/${key}`);
  } catch (err) {
    return { status: -1, headers: new Headers(), body: new Uint8Array(0), error: String(err) };
  }
}

test("without faults: requests pass unchanged, signatures and all", async () => {
  await put("a", body(1));
  const r = await get("a");
  expect([r.status, r.body]).toEqual([200, body(1)]);
  expect(proxy.requests).toBe(2);
  expect(Object.values(proxy.fired).every((n) => n === 0)).toBe(true);
});

test("a truncated body, a wrong Content-Length, a reset: the client never gets the whole body as if it were fine", async () => {
  await put("t", body(2));
  for (const fault of ["truncate", "wrongLength", "reset"] as const) {
    proxy.set({ [fault]: 1 });
    for (let i = 0; i < 6; i++) {
      const r = await get("t");
      // A shorter Content-Length is the one case that gives a body: short of the object's.
      if (r.status === 200) expect(r.body.length).toBeLessThan(1000);
    }
    proxy.set({ [fault]: 0 });
    expect(proxy.fired[fault]).toBe(6);
  }
  // A reset after forwarding carries the request out: half the time the PUT is stored.
  proxy.set({ reset: 1 });
  const before = server.counters.requests.PUT;
  for (let i = 0; i < 20; i++) await s3("PUT", `${bucket}/r`, { body: body(3) }).catch(() => undefined);
  expect(server.counters.requests.PUT - before).toBeGreaterThan(0);
  expect(server.counters.requests.PUT - before).toBeLessThan(20);
});

test("503 answers and delays, only for the keys that match", async () => {
  await put("k1", body(4));
  proxy.set({ status503: 1, keyPattern: /^k2$/ });
  expect((await get("k1")).status).toBe(200);
  expect((await get("k2")).status).toBe(503);
  expect(proxy.fired.status503).toBe(1);
  proxy.set({ status503: 0, delay: 1, delayMs: 300, keyPattern: undefined });
  const started = performance.now();
  expect((await get("k1")).status).toBe(200);
  expect(performance.now() - started).toBeGreaterThanOrEqual(290);
  expect(proxy.fired.delay).toBe(1);
});

test("swapped bodies: another key's body, with its headers or under this key's ETag", async () => {
  await put("s1", body(5));
  await put("s2", body(6));
  await get("s1"); // the proxy has seen s1's answer: it is what s2 gets
  proxy.set({ swap: 1 });
  const bare = await get("s2");
  expect(bare.body).toEqual(body(5));
  expect(bare.headers.get("etag")).toBe(`"${new Bun.CryptoHasher("md5").update(body(6)).digest("hex")}"`);
  proxy.set({ swapHeaders: true });
  const whole = await get("s2");
  expect(whole.body).toEqual(body(5));
  expect(whole.headers.get("etag")).toBe(`"${new Bun.CryptoHasher("md5").update(body(5)).digest("hex")}"`);
  expect(proxy.fired.swap).toBe(2);
});

test("stale answers: the version from before a PUT (or a DELETE) for staleMs, then the new one", async () => {
  await put("v", body(7));
  proxy.set({ staleMs: 700 });
  await put("v", body(8));
  expect((await get("v")).body).toEqual(body(7));
  expect((await s3("HEAD", `${bucket}/v`)).headers.get("content-length")).toBe("1000");
  await put("new", body(9));
  expect((await get("new")).status).toBe(404); // not there before: not there yet
  await Bun.sleep(800);
  expect((await get("v")).body).toEqual(body(8));
  expect((await get("new")).body).toEqual(body(9));
  expect((await s3("DELETE", `${bucket}/v`)).status).toBe(204);
  expect((await get("v")).body).toEqual(body(8));
  expect(proxy.fired.stale).toBe(4);
});

test("DeleteObjects with per-key errors: those keys are answered as failed and stay", async () => {
  const keys = ["d1", "d2", "e1", "e2"];
  for (const k of keys) await put(k, body(10));
  proxy.set({ deleteErrors: 1, keyPattern: /^e/ });
  const xml = `<?xml version="1.0" encoding="UTF-8"?><Delete><Quiet>true</Quiet>${keys.map((k) => `<Object><Key>${k}</Key></Object>`).join("")}</Delete>`;
  const md5 = Buffer.from(new Bun.CryptoHasher("md5").update(xml).digest()).toString("base64");
  const r = await s3("POST", `${bucket}?delete`, { body: xml, headers: { "content-md5": md5 } });
  const answer = new TextDecoder().decode(r.body);
  expect(r.status).toBe(200);
  expect([...answer.matchAll(/<Error><Key>([^<]+)<\/Key>/g)].map((m) => m[1])).toEqual(["e1", "e2"]);
  expect(proxy.fired.deleteErrors).toBe(2);
  expect(await Promise.all(keys.map(async (k) => (await get(k)).status))).toEqual([404, 404, 200, 200]);
});

test("outages: a black hole holds requests until it ends; refused connections while nothing listens", async () => {
  await put("o", body(11));
  const port = Number(new URL(proxy.url).port);
  const hole = proxy.during(500, { outage: "blackhole" });
  const started = performance.now();
  // (A raw request: fetch would send it again on a new connection once this one closes.)
  const heard = await new Promise<string>((resolve) => {
    let got = "";
    const c = net.connect(port, "127.0.0.1", () => c.write(`GET /${bucket}/o HTTP/1.1\r\nhost: x\r\n\r\n`));
    c.on("data", (d) => (got += d));
    c.on("close", () => resolve(got));
  });
  expect(heard).toBe(""); // the connection closed when the outage ended, unanswered
  expect(performance.now() - started).toBeGreaterThanOrEqual(400);
  await hole;
  expect(proxy.fired.blackhole).toBe(1);
  expect((await get("o")).status).toBe(200);

  const refused = proxy.during(500, { outage: "refuse" });
  const error = await new Promise<string>((resolve) => {
    const c = net.connect(port, "127.0.0.1");
    c.on("connect", () => resolve("connected"));
    c.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
  expect(error).toBe("ECONNREFUSED");
  await refused;
  expect(proxy.fired.refuse).toBe(1);
  expect((await get("o")).status).toBe(200);
});
