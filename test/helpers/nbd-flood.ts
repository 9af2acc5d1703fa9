/**
 * Hostile NBD clients that never read a reply: one pipelines large WRITEs after the handshake, one
 * floods the handshake with options. They honour only the kernel's backpressure (they wait when
 * their own socket will take no more), so what they get sent is what the server let in.
 */
import { createConnection, type Socket } from "node:net";
import { readFileSync } from "node:fs";

export interface Flood {
  /** Bytes (requests and payloads) the kernel took from the client (their write callbacks ran). */
  sent: number;
  /** Time spent waiting for the socket to take more. */
  stalledMs: number;
  /** The longest single wait. */
  longestStallMs: number;
  elapsedMs: number;
}

const u32 = (v: number) => [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
const u64 = (v: number) => [...u32(Math.floor(v / 2 ** 32)), ...u32(v >>> 0)];

/** Handshake with NBD_OPT_EXPORT_NAME (fixed newstyle, no zeroes); resolves with the export's size. */
async function handshake(socket: Socket): Promise<number> {
  let got = new Uint8Array(0);
  const need = async (n: number): Promise<Uint8Array> => {
    while (got.length < n) {
      const chunk = await new Promise<Uint8Array>((resolve, reject) => {
        socket.once("data", resolve);
        socket.once("error", reject);
      });
      const joined = new Uint8Array(got.length + chunk.length);
      joined.set(got);
      joined.set(chunk, got.length);
      got = joined;
    }
    const out = got.subarray(0, n);
    got = got.subarray(n);
    return out;
  };
  await need(18); // NBDMAGIC, IHAVEOPT, handshake flags
  socket.write(new Uint8Array([...u32(3), ...[0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54], ...u32(1), ...u32(0)]));
  const info = await need(10);
  socket.pause();
  return Number(new DataView(info.buffer, info.byteOffset).getBigUint64(0));
}

/**
 * Connects to a Unix socket and sends WRITEs of `requestBytes` (offsets wrapping around the export)
 * until `totalBytes` are sent or `seconds` have passed; never reads a reply.
 */
export async function floodWrites(path: string, o: { totalBytes: number; requestBytes: number; seconds: number }): Promise<Flood> {
  const socket = createConnection(path);
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  const size = await handshake(socket);
  const payload = new Uint8Array(o.requestBytes).fill(0x5a);
  const started = performance.now();
  const deadline = started + o.seconds * 1000;
  const flood: Flood = { sent: 0, stalledMs: 0, longestStallMs: 0, elapsedMs: 0 };
  let closed = false;
  socket.on("close", () => (closed = true));
  socket.on("error", () => (closed = true));
  let offset = 0;
  let queued = 0;
  for (let cookie = 1; queued < o.totalBytes && !closed && performance.now() < deadline; cookie++) {
    if (offset + o.requestBytes > size) offset = 0;
    const header = new Uint8Array([...u32(0x25609513), 0, 0, 0, 1, ...u64(cookie), ...u64(offset), ...u32(o.requestBytes)]);
    offset += o.requestBytes;
    queued += header.length + payload.length;
    socket.write(header, () => (flood.sent += header.length));
    if (!socket.write(payload, () => (flood.sent += payload.length))) {
      const waitStart = performance.now();
      // Drained, closed, or out of time: a server that stopped reading keeps the client waiting.
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          socket.off("drain", done).off("close", done);
          resolve();
        };
        const timer = setTimeout(done, Math.max(0, deadline - performance.now()));
        socket.on("drain", done).on("close", done);
      });
      const waited = performance.now() - waitStart;
      flood.stalledMs += waited;
      flood.longestStallMs = Math.max(flood.longestStallMs, waited);
    }
  }
  flood.elapsedMs = performance.now() - started;
  socket.destroy();
  return flood;
}

export interface OptionFlood {
  /** Options the kernel took from the client. */
  sent: number;
  /** The server hung up before the client was done. */
  hungUp: boolean;
  elapsedMs: number;
}

/**
 * A hostile client in the handshake: it reads nothing, sends the client flags, then `count`
 * NBD_OPT_LIST options (16 bytes each, none waiting for its reply) as fast as the socket takes
 * them, until all are sent, the server hangs up, or `seconds` have passed.
 */
export async function floodOptions(port: number, o: { count: number; seconds: number }): Promise<OptionFlood> {
  const socket = createConnection({ host: "127.0.0.1", port });
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  socket.pause(); // the greeting and every reply stay unread
  let hungUp = false;
  const over = new Promise<void>((resolve) => socket.on("close", resolve));
  socket.on("error", () => {});
  socket.on("close", () => (hungUp = true));
  const PER_WRITE = 4096;
  const batch = new Uint8Array(PER_WRITE * 16);
  for (let i = 0; i < PER_WRITE; i++) batch.set([0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54, ...u32(3), ...u32(0)], i * 16);
  const started = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let timedOut = false;
  const timeUp = new Promise<void>((resolve) => (timer = setTimeout(() => resolve(void (timedOut = true)), o.seconds * 1000)));
  const flood: OptionFlood = { sent: 0, hungUp: false, elapsedMs: 0 };
  socket.write(new Uint8Array(u32(3))); // FIXED_NEWSTYLE | NO_ZEROES
  for (let queued = 0; queued < o.count && !hungUp && !timedOut; queued += PER_WRITE) {
    const n = Math.min(PER_WRITE, o.count - queued);
    if (!socket.write(batch.subarray(0, n * 16), (err) => void (err || (flood.sent += n)))) {
      await Promise.race([new Promise((resolve) => socket.once("drain", resolve)), over, timeUp]);
    }
  }
  clearTimeout(timer);
  flood.hungUp = hungUp;
  flood.elapsedMs = performance.now() - started;
  socket.destroy();
  return flood;
}

/** A process's peak resident size so far (VmHWM), in bytes. */
export function peakResident(pid: number): number {
  return Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
}

/** A process's resident size now (VmRSS), in bytes. */
export function resident(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
}
