/**
 * The HTTP threads against real sockets: a normal server (keep-alive reuse, big bodies and their
 * CRC-32, PUT bodies), and raw servers that misbehave: closing kept connections, answering late or
 * early, chunked, taking a body slowly.
 */
import { afterAll, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { createServer, type Server, type Socket as NetSocket } from "node:net";
import { createHash } from "node:crypto";
import { BodySlots, HttpThreadError, HttpThreads, httpThreadsUsable } from "../../src/http/http-threads.ts";
import { pattern } from "../helpers/data.ts";
import { BufferPool } from "../../src/memory/buffer-pool.ts";

const pool = new HttpThreads(2, { insecure: false, ca: undefined });
const listeners: TCPSocketListener<unknown>[] = [];
afterAll(() => {
  pool.close();
  for (const l of listeners) l.stop(true);
});

const BIG = pattern(1 << 20, 5);
let connections = 0;
const http = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  fetch(req, server) {
    void server;
    const u = new URL(req.url);
    if (u.pathname === "/big") return new Response(BIG, { headers: { etag: '"e"' } });
    if (u.pathname === "/half") return new Response(BIG.subarray(0, 1 << 19));
    if (u.pathname === "/over") return new Response(pattern((1 << 20) + 1, 6));
    if (req.method === "PUT") {
      return req.bytes().then((b) => new Response(`${req.headers.get("content-length")} ${createHash("md5").update(b).digest("hex")}`));
    }
    return new Response(`${req.method} ${u.pathname}${u.search} ${req.headers.get("x-test")}`, { status: 201 });
  },
});
afterAll(() => http.stop(true));

/** A raw server: `answer` decides what each request on a connection gets. */
function raw(answer: (socket: Socket<{ n: number }>, n: number) => void): number {
  const l = Bun.listen<{ n: number }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        connections++;
        s.data = { n: 0 };
      },
      data(s, chunk) {
        if (!new TextDecoder().decode(chunk).includes("\r\n\r\n")) return;
        answer(s, s.data.n++);
      },
    },
  });
  listeners.push(l as TCPSocketListener<unknown>);
  return l.port;
}

test("HTTP threads are used unless a proxy is set", () => {
  expect(httpThreadsUsable({})).toBe(true);
  expect(httpThreadsUsable({ HTTPS_PROXY: "http://proxy:3128" })).toBe(false);
});

test("answers, with their headers and body; the path and query as given; a 1 MiB body with its CRC-32", async () => {
  const small = await pool.get(new URL(`http://127.0.0.1:${http.port}/b/k%20x?x=1`), { "x-test": "yes" }, 5000);
  expect(small.status).toBe(201);
  expect(new TextDecoder().decode(small.body)).toBe("GET /b/k%20x?x=1 yes");
  const answers = await Promise.all(Array.from({ length: 8 }, () => pool.get(new URL(`http://127.0.0.1:${http.port}/big`), {}, 5000)));
  for (const a of answers) {
    expect(a.headers.get("etag")).toBe('"e"');
    expect(a.body).toEqual(BIG);
    expect(a.crc32).toBe(Bun.hash.crc32(BIG) >>> 0);
  }
});

test("connections are kept and reused", async () => {
  const port = raw((s) => s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
  const before = connections;
  for (let i = 0; i < 10; i++) expect((await pool.get(new URL(`http://127.0.0.1:${port}/x`), {}, 5000)).status).toBe(200);
  expect(connections - before).toBeLessThanOrEqual(2);
});

test("a kept connection the server has closed: the GET goes again on a new one, without an error", async () => {
  // Answers as if keeping the connection, then closes it after a moment (an idle timeout).
  const port = raw((s) => {
    s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    setTimeout(() => s.end(), 20);
  });
  for (let i = 0; i < 5; i++) {
    expect((await pool.get(new URL(`http://127.0.0.1:${port}/x`), {}, 5000)).status).toBe(200);
    await Bun.sleep(60);
  }
  // Closed at the moment the request arrives, before any answer: sent again too.
  const rude = raw((s, n) => (n === 0 ? s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") : s.end()));
  for (let i = 0; i < 4; i++) expect((await pool.get(new URL(`http://127.0.0.1:${rude}/x`), {}, 5000)).status).toBe(200);
});

test("chunked answers; a connection closed in the middle of a body is an error, not a short body", async () => {
  const chunked = raw((s) => s.write("HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"));
  const r = await pool.get(new URL(`http://127.0.0.1:${chunked}/x`), {}, 5000);
  expect(r.status).toBe(404);
  expect(new TextDecoder().decode(r.body)).toBe("abc");
  const cut = raw((s) => {
    s.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this");
    s.end();
  });
  const err = await pool.get(new URL(`http://127.0.0.1:${cut}/x`), {}, 5000).catch((e) => e);
  expect(err).toBeInstanceOf(HttpThreadError);
  expect((err as HttpThreadError).message).toMatch(/middle of a response body/);
  expect((err as HttpThreadError).timedOut).toBe(false);
});

test("a server that does not answer in time: a timeout error; one that is not there: an error", async () => {
  const silent = raw(() => {});
  const started = performance.now();
  const err = await pool.get(new URL(`http://127.0.0.1:${silent}/x`), {}, 200).catch((e) => e);
  expect(err).toBeInstanceOf(HttpThreadError);
  expect((err as HttpThreadError).timedOut).toBe(true);
  expect(performance.now() - started).toBeLessThan(3000);
  const closedPort = raw(() => {});
  listeners.pop()!.stop(true);
  const refused = await pool.get(new URL(`http://127.0.0.1:${closedPort}/x`), {}, 2000).catch((e) => e);
  expect(refused).toBeInstanceOf(HttpThreadError);
  expect((refused as HttpThreadError).timedOut).toBe(false);
});

test("Connection: close asks for a new connection each time", async () => {
  const port = raw((s) => s.write("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
  const before = connections;
  for (let i = 0; i < 3; i++) await pool.get(new URL(`http://127.0.0.1:${port}/x`), { connection: "close" }, 5000);
  expect(connections - before).toBe(3);
});

test("a body is read into a spare buffer that fits; one not used (an error status, a body too big, a failure) comes back spare", async () => {
  const spares = new BufferPool(1 << 20);
  const give = (fill: number) => spares.give(new Uint8Array(1 << 20).fill(fill));
  const turn = () => Bun.sleep(1);
  give(1);
  await turn();
  const read = await pool.get(new URL(`http://127.0.0.1:${http.port}/half`), {}, 5000, spares);
  expect(read.body.byteLength).toBe(1 << 19);
  expect(read.body.buffer.byteLength).toBe(1 << 20); // the spare's memory, not a buffer of the body's size
  expect(read.body).toEqual(BIG.subarray(0, 1 << 19));
  expect(read.crc32).toBe(Bun.hash.crc32(read.body) >>> 0);
  expect(spares.takeSpare()).toBeUndefined(); // it was used

  give(2);
  await turn();
  const missing = raw((s) => s.write("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nno such k"));
  expect((await pool.get(new URL(`http://127.0.0.1:${missing}/x`), {}, 5000, spares)).status).toBe(404);
  await turn();
  const back = spares.takeSpare();
  expect(back?.byteLength).toBe(1 << 20); // handed back, whole

  give(3);
  await turn();
  const big = await pool.get(new URL(`http://127.0.0.1:${http.port}/over`), {}, 5000, spares);
  expect(big.body).toEqual(pattern((1 << 20) + 1, 6));
  await turn();
  expect(spares.takeSpare()?.byteLength).toBe(1 << 20);

  give(4);
  await turn();
  const cut = raw((s) => {
    s.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this");
    s.end();
  });
  expect(await pool.get(new URL(`http://127.0.0.1:${cut}/x`), {}, 5000, spares).catch((e) => e)).toBeInstanceOf(HttpThreadError);
  await turn();
  expect(spares.takeSpare()?.byteLength).toBe(1 << 20);
});

const md5 = (b: Uint8Array) => createHash("md5").update(b).digest("hex");

test("PUT bodies arrive whole with their length, several at once; the caller's bytes are its own again once put() returns", async () => {
  const bodies = Array.from({ length: 8 }, (_, i) => pattern((1 << 20) - i * 1000, 10 + i));
  const expected = bodies.map((b) => `${b.length} ${md5(b)}`);
  const puts = bodies.map((b) => pool.put(new URL(`http://127.0.0.1:${http.port}/b/k`), {}, b, 5000));
  for (const b of bodies) b.fill(0); // copied before put() returned: the server still gets the old bytes
  const answers = await Promise.all(puts);
  expect(answers.map((a) => new TextDecoder().decode(a.body))).toEqual(expected);
  const empty = await pool.put(new URL(`http://127.0.0.1:${http.port}/b/e`), {}, new Uint8Array(0), 5000);
  expect(new TextDecoder().decode(empty.body)).toBe(`0 ${md5(new Uint8Array(0))}`);
});

test("a staged PUT body is hashed on a thread (alone, or side by side) and sent from its copy, whatever the caller's bytes became", async () => {
  for (const n of [1, 2, 3, 4]) {
    const bodies = Array.from({ length: n }, (_, i) => pattern((1 << 20) - 512, 40 + i));
    const expected = bodies.map((b) => `${b.length} ${md5(b)}`);
    const staged = bodies.map((b) => pool.stage(b));
    const digests = await pool.md5Staged(staged.map((s) => s.view));
    expect(digests.map((d) => Buffer.from(d).toString("hex"))).toEqual(bodies.map((b) => md5(b)));
    for (const b of bodies) b.fill(0); // the PUT sends the copy hashed
    const answers = await Promise.all(bodies.map((b, i) => pool.put(new URL(`http://127.0.0.1:${http.port}/b/s`), {}, b, 5000, staged[i])));
    expect(answers.map((a) => new TextDecoder().decode(a.body))).toEqual(expected);
  }
});

/** A node:net server whose connections the test controls (pause, resume, answer); every byte each one received. */
function netServer(onHead: (socket: NetSocket, received: () => number) => void): Promise<{ port: number; sockets: NetSocket[]; received: number[]; closed: Promise<void>[]; server: Server }> {
  const sockets: NetSocket[] = [];
  const received: number[] = [];
  const closed: Promise<void>[] = [];
  const server = createServer((socket) => {
    const n = sockets.push(socket) - 1;
    received[n] = 0;
    closed[n] = new Promise((resolve) => socket.once("close", () => resolve()));
    let answered = false;
    socket.on("data", (chunk) => {
      received[n]! += chunk.length;
      if (!answered && chunk.includes("\r\n\r\n")) {
        answered = true;
        onHead(socket, () => received[n]!);
      }
    });
    socket.on("error", () => {});
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ port: (server.address() as { port: number }).port, sockets, received, closed, server })));
}

test("a server that takes a body slowly gets all of it (sent as the socket drains)", async () => {
  const body = pattern(24 << 20, 20);
  const s = await netServer((socket, got) => {
    socket.pause();
    const step = () => {
      socket.resume();
      setTimeout(() => {
        socket.pause();
        if (got() >= body.length) socket.end(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok`);
        else setTimeout(step, 5);
      }, 5);
    };
    setTimeout(step, 20);
  });
  try {
    const r = await pool.put(new URL(`http://127.0.0.1:${s.port}/b/k`), {}, body, 20000);
    expect(r.status).toBe(200);
    expect(s.received[0]).toBeGreaterThan(body.length); // the head and all of the body
  } finally {
    s.server.close();
  }
});

test("a PUT that fails (no answer in time, or an answer before the body was taken) never sends the rest of its body later", async () => {
  const body = pattern(32 << 20, 21);
  // Takes nothing until the test says so, and never answers.
  const silent = await netServer((socket) => socket.pause());
  try {
    const err = await pool.put(new URL(`http://127.0.0.1:${silent.port}/b/k`), {}, body, 300).catch((e) => e);
    expect(err).toBeInstanceOf(HttpThreadError);
    expect((err as HttpThreadError).timedOut).toBe(true);
    silent.sockets[0]!.resume();
    await silent.closed[0];
    expect(silent.received[0]).toBeLessThan(body.length / 2); // what the sockets held then, not the rest
  } finally {
    silent.server.close();
  }
  // Answers 413 on seeing the head and takes nothing more: the connection is not used again.
  const early = await netServer((socket) => {
    socket.pause();
    socket.write("HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n");
  });
  try {
    expect((await pool.put(new URL(`http://127.0.0.1:${early.port}/b/k`), {}, body, 5000)).status).toBe(413);
    expect((await pool.put(new URL(`http://127.0.0.1:${early.port}/b/k`), {}, body, 5000)).status).toBe(413);
    expect(early.sockets.length).toBe(2);
    early.sockets[0]!.resume();
    await early.closed[0];
    expect(early.received[0]).toBeLessThan(body.length / 2);
  } finally {
    early.server.close();
  }
});

test("body slots: a kept slot that fits is reused; sizes go up in steps; only so many are kept", () => {
  const slots = new BodySlots();
  const a = slots.take(1000);
  expect(a.byteLength).toBe(64 * 1024);
  slots.give(a);
  expect(slots.take(2000)).toBe(a);
  const big = slots.take(70_000);
  expect(big.byteLength).toBe(128 * 1024);
  slots.give(big);
  slots.give(a);
  expect(slots.take(100_000)).toBe(big); // the first that fits
  const many = Array.from({ length: 40 }, () => slots.take(10));
  for (const m of many) slots.give(m);
  const again = Array.from({ length: 40 }, () => slots.take(10));
  expect(again.filter((m) => many.includes(m)).length).toBe(32);
});
