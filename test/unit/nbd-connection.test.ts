/**
 * An NBD connection driven by hand-laid bytes (doc/proto.md's layouts) over a fake wire and an
 * in-memory device: the handshake's replies, then requests answered out of order.
 */
import { expect, test } from "bun:test";
import { NbdConnection, type Wire } from "../../src/nbd/connection.ts";
import { ByteReader } from "../../src/nbd/byte-reader.ts";
import { InFlightBytes } from "../../src/nbd/in-flight-bytes.ts";
import type { NbdDevice } from "../../src/nbd/device.ts";
import { zeroExtents } from "../../src/file/extents.ts";
import type { Logger } from "../../src/log.ts";

const SIZE = 1 << 20;
const BLOCK = 65536;
const quiet = { debug() {}, info() {}, warn() {}, error() {} } as unknown as Logger;

/** A RAM device whose reads of offset 0 wait until `release` (so later requests overtake them). */
function memoryDevice() {
  const bytes = new Uint8Array(SIZE);
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const flushes: number[] = [];
  const device: NbdDevice = {
    size: SIZE,
    blockSize: BLOCK,
    readOnly: false,
    async read(offset, length) {
      if (offset === 0) await held;
      return [bytes.slice(offset, offset + length)];
    },
    async write(offset, data) {
      bytes.set(data, offset);
      return data.length;
    },
    async flush() {
      flushes.push(Date.now());
    },
    async trim() {},
    async zero(offset, length) {
      bytes.fill(0, offset, offset + length);
    },
    async prefetch() {},
    extents: (offset, length, max) => zeroExtents(offset, length, SIZE, BLOCK, (b) => b >= 8, max),
  };
  return { device, bytes, release, flushes };
}

function fakeWire() {
  const out: Uint8Array[] = [];
  const wire: Wire = { write: (b) => (out.push(b.slice()), true), drained: async () => {}, close: () => out.push(new Uint8Array(0)), abort() {}, pause() {}, resume() {} };
  return { wire, out };
}

const u32 = (v: number) => [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
const u16 = (v: number) => [v >>> 8, v & 255];
const u64 = (v: number) => [...u32(Math.floor(v / 2 ** 32)), ...u32(v >>> 0)];
const IHAVEOPT = [0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54];
const option = (code: number, data: number[] = []) => new Uint8Array([...IHAVEOPT, ...u32(code), ...u32(data.length), ...data]);
const request = (type: number, cookie: number, offset: number, length: number, flags = 0) =>
  new Uint8Array([...u32(0x25609513), ...u16(flags), ...u16(type), ...u64(cookie), ...u64(offset), ...u32(length)]);
const tick = () => new Promise((r) => setTimeout(r, 5));
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

async function connected(structured: boolean) {
  const { device, bytes, release, flushes } = memoryDevice();
  const { wire, out } = fakeWire();
  const c = new NbdConnection(wire, device, { name: "file", description: "test", size: SIZE, blockSize: BLOCK, readOnly: false }, quiet, "test");
  const done = c.run();
  c.reader.push(new Uint8Array(u32(3))); // fixed newstyle, no zeroes
  if (structured) c.reader.push(option(8));
  const meta = [...u32(0), ...u32(1), ...u32(15), ...new TextEncoder().encode("base:allocation")];
  if (structured) c.reader.push(option(10, meta));
  c.reader.push(option(7, [...u32(0), ...u16(1), ...u16(3)])); // GO "", asking for the block size
  await tick();
  return { c, out, done, bytes, release, flushes };
}

test("the handshake: greeting, structured replies, base:allocation, GO with size, flags and block sizes", async () => {
  const { out, c, done } = await connected(true);
  expect(hex(out[0]!)).toBe("4e42444d41474943" + "49484156454f5054" + "0003");
  const reply = (opt: number, type: number, data: string) => "0003e889045565a9" + hex(new Uint8Array([...u32(opt), ...u32(type), ...u32(data.length / 2)])) + data;
  expect(hex(out[1]!)).toBe(reply(8, 1, ""));
  expect(hex(out[2]!)).toBe(reply(10, 4, "00000001" + hex(new TextEncoder().encode("base:allocation"))));
  expect(hex(out[3]!)).toBe(reply(10, 1, ""));
  // INFO_EXPORT: size 1 MiB; flags HAS_FLAGS|FLUSH|FUA|TRIM|WRITE_ZEROES|DF|MULTI_CONN|CACHE|FAST_ZERO = 0x0ded
  expect(hex(out[4]!)).toBe(reply(7, 3, "0000" + "0000000000100000" + "0ded"));
  expect(hex(out[5]!)).toBe(reply(7, 3, "0003" + "00000200" + "00010000" + "02000000"));
  expect(hex(out[6]!)).toBe(reply(7, 1, ""));
  c.reader.push(request(2, 0, 0, 0)); // DISC
  await done;
});

test("replies go out as requests finish: a slow read is overtaken, and its bytes are the ones written", async () => {
  const { c, out, done, release } = await connected(false);
  out.length = 0;
  const data = Uint8Array.from({ length: 4096 }, (_, i) => i & 255);
  c.reader.push(new Uint8Array([...request(1, 0x11, 0, 4096), ...data])); // WRITE at 0
  await tick();
  c.reader.push(request(0, 0x22, 0, 4096)); // READ at 0: held
  c.reader.push(request(3, 0x33, 0, 0)); // FLUSH
  await tick();
  expect(out.map((b) => hex(b.subarray(0, 16)))).toEqual([
    "67446698" + "00000000" + "0000000000000011",
    "67446698" + "00000000" + "0000000000000033",
  ]);
  release();
  await tick();
  expect(hex(out[2]!)).toBe("67446698" + "00000000" + "0000000000000022");
  expect(out[3]!).toEqual(data);
  c.reader.push(request(2, 0, 0, 0));
  await done;
});

test("errors: past the end, misaligned (the client asked for block sizes), and a structured read error chunk", async () => {
  const { c, out, done } = await connected(true);
  out.length = 0;
  c.reader.push(request(0, 1, SIZE - 512, 1024)); // READ past the end
  c.reader.push(request(1, 2, SIZE, 0)); // WRITE of nothing at the end: fine
  c.reader.push(request(0, 3, 1, 100)); // misaligned READ
  await tick();
  // Replies in any order: found by cookie (bytes 8-16 in both reply kinds).
  const byCookie = (n: number) => out.find((b) => b[15] === n)!;
  // Structured error chunk: magic, DONE, type ERROR (0x8001), cookie, length, then EINVAL.
  expect(hex(byCookie(1).subarray(0, 24))).toBe("668e33ef" + "0001" + "8001" + "0000000000000001" + hex(new Uint8Array(u32(byCookie(1).length - 20))) + "00000016");
  expect(hex(byCookie(2))).toBe("67446698" + "00000000" + "0000000000000002");
  expect(hex(byCookie(3).subarray(20, 24))).toBe("00000016");
  c.reader.push(request(2, 0, 0, 0));
  await done;
});

test("BLOCK_STATUS: extents of data then holes, clipped to the request; REQ_ONE gives one", async () => {
  const { c, out, done } = await connected(true);
  out.length = 0;
  c.reader.push(request(7, 9, 4096, 10 * BLOCK)); // blocks 0-7 data, 8+ holes (see memoryDevice)
  c.reader.push(request(7, 10, 0, 10 * BLOCK, 1 << 3));
  await tick();
  const body = (n: number) => hex(out[n]!.subarray(20));
  expect(hex(out[0]!.subarray(0, 8))).toBe("668e33ef" + "0001" + "0005");
  expect(body(0)).toBe("00000001" + hex(new Uint8Array([...u32(8 * BLOCK - 4096), ...u32(0), ...u32(2 * BLOCK + 4096), ...u32(3)])));
  expect(body(1)).toBe("00000001" + hex(new Uint8Array([...u32(8 * BLOCK), ...u32(0)])));
  c.reader.push(request(2, 0, 0, 0));
  await done;
});

test("a FUA write is flushed before its reply; a client that leaves mid-payload writes nothing", async () => {
  const { c, out, done, bytes, flushes } = await connected(false);
  out.length = 0;
  c.reader.push(new Uint8Array([...request(1, 5, 8192, 512, 1), ...new Uint8Array(512).fill(7)]));
  await tick();
  expect(flushes.length).toBe(1);
  expect(bytes[8192]).toBe(7);
  c.reader.push(new Uint8Array([...request(1, 6, 0, 4096), ...new Uint8Array(100).fill(9)]));
  await tick();
  c.lost(new Error("gone"));
  await done;
  expect(bytes[0]).toBe(0);
  expect(out.length).toBe(1);
});

test("the byte reader pauses its source while it holds its limit unasked, and resumes when takes bring it below", async () => {
  const flow: string[] = [];
  const r = new ByteReader({ limit: 10, pause: () => flow.push("pause"), resume: () => flow.push("resume") });
  r.push(new Uint8Array(6));
  expect(flow).toEqual([]);
  r.push(new Uint8Array(6)); // 12 held
  expect(flow).toEqual(["pause"]);
  r.push(new Uint8Array(6)); // a chunk already on its way: kept, no second pause
  expect(r.takeNow(9)!.length).toBe(9); // 9 left
  expect(flow).toEqual(["pause", "resume"]);
  r.push(new Uint8Array(3)); // 12 again
  expect(flow).toEqual(["pause", "resume", "pause"]);
  // A take waiting for more than is held needs the bytes, limit or not.
  const big = r.take(40);
  expect(flow.at(-1)).toBe("resume");
  for (let i = 0; i < 7; i++) r.push(Uint8Array.from({ length: 4 }, (_, j) => i * 4 + j));
  const got = await big;
  expect(got.length).toBe(40);
  expect(Array.from(got.subarray(12))).toEqual(Array.from({ length: 28 }, (_, j) => j));
  expect(flow.at(-1)).toBe("resume");
});

test("a client that sends faster than its writes finish is held back: in-flight bytes stop at the bound, the socket is paused, then resumed as they finish", async () => {
  const held: (() => void)[] = [];
  const base = memoryDevice();
  const device: NbdDevice = {
    ...base.device,
    async write(offset, data) {
      await new Promise<void>((resolve) => held.push(resolve));
      return base.device.write(offset, data);
    },
  };
  const flow: string[] = [];
  const out: Uint8Array[] = [];
  const wire: Wire = {
    write: (b) => (out.push(b.slice()), true), drained: async () => {}, close() {}, abort() {}, pause: () => flow.push("pause"), resume: () => flow.push("resume"),
  };
  const c = new NbdConnection(wire, device, { name: "file", description: "test", size: SIZE, blockSize: BLOCK, readOnly: false }, quiet, "test", new InFlightBytes(64 * 1024));
  const done = c.run();
  c.reader.push(new Uint8Array(u32(3)));
  c.reader.push(option(1)); // EXPORT_NAME ""
  await tick();
  out.length = 0;
  flow.length = 0; // the handshake's own holds
  const WRITE = 16 * 1024;
  const COUNT = 256; // 4 MiB, twice what is read ahead
  for (let i = 0; i < COUNT; i++) {
    const req = new Uint8Array(28 + WRITE);
    req.set(request(1, i + 1, (i * WRITE) % SIZE, WRITE));
    req.fill(i & 255, 28);
    c.reader.push(req);
  }
  await tick();
  expect(held.length).toBe(4); // 64 KiB of 16 KiB writes, not MAX_IN_FLIGHT of them
  expect(flow).toEqual(["pause"]);
  while (out.length < COUNT) {
    expect(held.length).toBeLessThanOrEqual(4);
    for (const resolve of held.splice(0)) resolve();
    await tick();
  }
  expect(flow).toEqual(["pause", "resume"]);
  expect(new Set(out.map((b) => hex(b.subarray(4, 8))))).toEqual(new Set(["00000000"])); // every write succeeded
  for (let k = 0; k < SIZE / WRITE; k++) expect(base.bytes[k * WRITE]).toBe((COUNT - SIZE / WRITE + k) & 255); // the last write of each place
  c.reader.push(request(2, 0, 0, 0));
  await done;
});

test("a large payload spanning chunks is read into memory kept from the previous one, lent only until its write settles", async () => {
  const base = memoryDevice();
  const seen: ArrayBufferLike[] = [];
  const device: NbdDevice = { ...base.device, write: (offset, data) => (seen.push(data.buffer), base.device.write(offset, data)) };
  const { wire, out } = fakeWire();
  const c = new NbdConnection(wire, device, { name: "file", description: "test", size: SIZE, blockSize: BLOCK, readOnly: false }, quiet, "test");
  const done = c.run();
  c.reader.push(new Uint8Array(u32(3)));
  c.reader.push(option(1));
  await tick();
  const LEN = 128 * 1024;
  for (const [i, offset] of [0, LEN, 2 * LEN].entries()) {
    const req = new Uint8Array(28 + LEN);
    req.set(request(1, i + 1, offset, LEN));
    req.fill(i + 1, 28);
    c.reader.push(req.subarray(0, 1000)); // the payload comes in pieces
    c.reader.push(req.subarray(1000));
    await tick();
  }
  expect(seen.length).toBe(3);
  expect([seen[1] === seen[0], seen[2] === seen[0]]).toEqual([true, true]);
  for (const i of [0, 1, 2]) expect(new Set(base.bytes.subarray(i * LEN, (i + 1) * LEN))).toEqual(new Set([i + 1]));
  expect(out.length).toBeGreaterThanOrEqual(3);
  c.reader.push(request(2, 0, 0, 0));
  await done;
});

/** A wire whose replies wait until `flush` (a client that does not read), with its flow and hang-ups. */
function backedUpWire() {
  const out: Uint8Array[] = [];
  const flow: string[] = [];
  let waiters: (() => void)[] = [];
  let queued = false;
  let gone = false;
  const flush = () => {
    queued = false;
    for (const w of waiters.splice(0)) w();
  };
  const wire: Wire = {
    write: (b) => (out.push(b.slice()), (queued = true)),
    drained: () => (queued && !gone ? new Promise<void>((r) => waiters.push(r)) : Promise.resolve()),
    close: () => flow.push("close"),
    abort: () => (flow.push("abort"), (gone = true), flush()),
    pause: () => flow.push("pause"),
    resume: () => flow.push("resume"),
  };
  return { wire, out, flow, flush };
}

function handshaking(wire: Wire, handshakeMs?: number) {
  const lines: string[] = [];
  const log = { debug() {}, info() {}, warn: (m: string) => lines.push(m), error: (m: string) => lines.push(m) } as unknown as Logger;
  const c = new NbdConnection(wire, memoryDevice().device, { name: "file", description: "test", size: SIZE, blockSize: BLOCK, readOnly: false }, log, "test", undefined, handshakeMs);
  const done = c.run();
  c.reader.push(new Uint8Array(u32(3)));
  return { c, done, lines };
}

test("the handshake reads no further option while its replies have not gone: the socket is paused until they have", async () => {
  const { wire, out, flow, flush } = backedUpWire();
  const { c, done } = handshaking(wire);
  for (let i = 0; i < 3; i++) c.reader.push(option(3)); // LIST, LIST, LIST: sent at once, nothing read
  await tick();
  expect({ replies: out.length, flow }).toEqual({ replies: 1, flow: ["pause"] }); // the greeting, unread
  for (const replies of [3, 5, 7]) {
    flush();
    await tick();
    expect({ replies: out.length, paused: flow.at(-1) }).toEqual({ replies, paused: "pause" }); // one option's SERVER and ACK
  }
  c.reader.push(option(2)); // ABORT
  flush();
  await tick();
  flush();
  await done;
  expect(flow.at(-1)).toBe("close");
});

test("a client that sends 32 options without choosing an export is hung up on, with one line in the log", async () => {
  const { wire, out } = fakeWire();
  const flow: string[] = [];
  const { c, done, lines } = handshaking({ ...wire, abort: () => flow.push("abort"), close: () => flow.push("close") });
  for (let i = 0; i < 40; i++) c.reader.push(option(99)); // unknown options: each gets ERR_UNSUP
  await done;
  expect({ replies: out.length - 1, flow, lines }).toEqual({ replies: 32, flow: ["abort"], lines: ["NBD test: 32 options and no export chosen: hanging up"] });
});

test("a client that chooses no export in time is hung up on, even while its replies wait for it to read", async () => {
  const { wire, flow } = backedUpWire();
  const { c, done, lines } = handshaking(wire, 50);
  c.reader.push(option(3));
  await done;
  const ends = flow.filter((f) => f === "abort" || f === "close");
  expect({ ends, lines }).toEqual({ ends: ["abort"], lines: ["NBD test: no export chosen within 0.05 s: hanging up"] });
});

test("stopping the server does not wait for a client in the handshake that reads nothing", async () => {
  const { wire, flow } = backedUpWire();
  const { c, done } = handshaking(wire);
  c.reader.push(option(3));
  await tick();
  c.stop();
  await done;
  expect(flow.filter((f) => f === "abort" || f === "close")).toEqual(["abort"]);
});
