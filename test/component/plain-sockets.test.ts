/**
 * The HTTP threads' plain sockets (src/http/plain-connections.ts), where a body is received
 * straight into its buffer: bodies split anyhow by the server, many requests at once, names,
 * refused connections; and the socket addresses given to connect(2).
 */
import { afterAll, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { HttpThreadError, HttpThreads } from "../../src/http/http-threads.ts";
import { socketAddress } from "../../src/runtime/libc-layouts.ts";
import { runtime } from "../../src/runtime/index.ts";
import { pattern, seededRandom } from "../helpers/data.ts";

const pool = new HttpThreads(2, { insecure: false, ca: undefined });
const listeners: TCPSocketListener<unknown>[] = [];
afterAll(() => {
  pool.close();
  for (const l of listeners) l.stop(true);
});

test("Bun has plain sockets (the path these tests are about)", () => {
  expect(runtime.plainSockets).toBeDefined();
});

test("a body arrives whole however the server splits it: the head in two, the body in pieces of 1 byte to 200 KiB, with pauses", async () => {
  const seed = Number(process.env.SEED ?? Date.now() % 1e9);
  console.log(`seed ${seed}`);
  const random = seededRandom(seed);
  const body = pattern((1 << 20) + 17, seed % 251);
  const l = Bun.listen<undefined>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      async data(s: Socket<undefined>, chunk) {
        if (!new TextDecoder().decode(chunk).includes("\r\n\r\n")) return;
        const head = new TextEncoder().encode(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`);
        s.write(head.subarray(0, 9));
        await Bun.sleep(2);
        // The rest of the head with the first bytes of the body, then the body in pieces.
        let at = Math.floor(random() * 1000);
        s.write(new Uint8Array([...head.subarray(9), ...body.subarray(0, at)]));
        while (at < body.length) {
          const n = Math.min(body.length - at, 1 + Math.floor(random() ** 3 * 200 * 1024));
          while (s.write(body.subarray(at, at + n)) === 0) await Bun.sleep(1);
          at += n;
          if (random() < 0.2) await Bun.sleep(1);
        }
      },
    },
  });
  listeners.push(l as TCPSocketListener<unknown>);
  for (let i = 0; i < 6; i++) {
    const answer = await pool.get(new URL(`http://127.0.0.1:${l.port}/x`), {}, 10_000);
    expect(answer.body.length).toBe(body.length);
    expect(Buffer.compare(answer.body, body)).toBe(0);
    expect(answer.crc32).toBe(Bun.hash.crc32(body) >>> 0);
  }
});

test("64 GETs of 1 MiB at once, on several connections of each thread: every body its own", async () => {
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: (req) => new Response(pattern(1 << 20, Number(new URL(req.url).pathname.slice(1)) % 251)),
  });
  try {
    const answers = await Promise.all(Array.from({ length: 64 }, (_, i) => pool.get(new URL(`http://127.0.0.1:${server.port}/${i}`), {}, 20_000)));
    answers.forEach((a, i) => expect(Buffer.compare(a.body, pattern(1 << 20, i % 251))).toBe(0));
  } finally {
    server.stop(true);
  }
});

test("a name is looked up (localhost); a refused connection says so", async () => {
  const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("by name") });
  const port = server.port;
  try {
    const a = await pool.get(new URL(`http://localhost:${port}/x`), {}, 5000);
    expect(new TextDecoder().decode(a.body)).toBe("by name");
  } finally {
    server.stop(true);
  }
  const refused = await pool.get(new URL(`http://127.0.0.1:${port}/x`), {}, 5000).catch((e) => e);
  expect(refused).toBeInstanceOf(HttpThreadError);
  expect((refused as Error).message).toContain("ECONNREFUSED");
});

test("socket addresses: IPv4, and IPv6 with :: and a dotted tail, port in network order", () => {
  const v4 = socketAddress("10.1.2.3", 0x1f90);
  expect([...v4.bytes]).toEqual([2, 0, 0x1f, 0x90, 10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0]);
  const hex = (ip: string) => Buffer.from(socketAddress(ip, 443).bytes.subarray(8, 24)).toString("hex");
  expect(socketAddress("::1", 443).bytes.length).toBe(28);
  expect([...socketAddress("::1", 443).bytes.subarray(0, 4)]).toEqual([10, 0, 1, 0xbb]);
  expect(hex("::1")).toBe("00000000000000000000000000000001");
  expect(hex("2001:db8::8:800:200c:417a")).toBe("20010db8000000000008080020 0c417a".replace(" ", ""));
  expect(hex("::ffff:1.2.3.4")).toBe("00000000000000000000ffff01020304");
  expect(hex("fe80::1%eth0")).toBe("fe800000000000000000000000000001");
  expect(() => socketAddress("not-an-ip", 1)).toThrow(/not an IP address/);
});

test("kept connections the server closed while idle, several: a GET that finds one dead goes again on a new one, not on another dead one", async () => {
  // One thread; three connections, the first made answering last: it is the first kept one
  // taken, and the first the poll reports closed, while the others are still kept.
  // The server closes them all once the last has answered (the thread is not polling then).
  const own = new HttpThreads(1, { insecure: false, ca: undefined });
  let made = 0;
  let answered: Socket<{ index: number }>[] = [];
  const l = Bun.listen<{ index: number }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open: (s) => void (s.data = { index: made++ }),
      data(s, chunk) {
        if (!new TextDecoder().decode(chunk).includes("\r\n\r\n")) return;
        setTimeout(() => {
          s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
          answered.push(s);
          if (answered.length < 3) return;
          const all = answered;
          answered = [];
          setTimeout(() => all.forEach((a) => a.end()), 20); // an idle timeout
        }, (3 - s.data.index) * 40);
      },
    },
  });
  listeners.push(l as TCPSocketListener<unknown>);
  const url = new URL(`http://127.0.0.1:${l.port}/x`);
  try {
    const answers = await Promise.all(Array.from({ length: 3 }, () => own.get(url, {}, 5000)));
    for (const a of answers) expect(a.status).toBe(200);
    expect(made).toBe(3);
    await Bun.sleep(100); // all three closed by the server, unread
    expect((await own.get(url, {}, 5000)).status).toBe(200);
    expect(made).toBe(4);
  } finally {
    own.close();
  }
});

test("closing the threads closes their sockets (the runtime does not know them)", async () => {
  const own = new HttpThreads(2, { insecure: false, ca: undefined });
  let open = 0;
  let closed = 0;
  const l = Bun.listen<undefined>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open: () => void open++,
      close: () => void closed++,
      data(s: Socket<undefined>, chunk) {
        if (new TextDecoder().decode(chunk).includes("\r\n\r\n")) s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      },
    },
  });
  listeners.push(l as TCPSocketListener<unknown>);
  await Promise.all(Array.from({ length: 4 }, () => own.get(new URL(`http://127.0.0.1:${l.port}/x`), {}, 5000)));
  expect(open).toBeGreaterThan(0);
  expect(closed).toBe(0);
  own.close();
  for (let i = 0; i < 100 && closed < open; i++) await Bun.sleep(20);
  expect(closed).toBe(open);
});
