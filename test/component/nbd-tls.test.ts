/**
 * NBD's STARTTLS as doc/proto.md sets it out, against an in-process server on a real socket,
 * driven byte by byte by a client of this test's own: FORCEDTLS refuses every option before TLS
 * but STARTTLS and ABORT with NBD_REP_ERR_TLS_REQD (and hangs up on EXPORT_NAME); STARTTLS with
 * data, or twice, is invalid; plaintext sent after STARTTLS (an injection) gets a hang-up; a
 * client with a certificate another CA signed is refused while others are served; a handshake
 * that does not come is given up; without TLS configured STARTTLS gets NBD_REP_ERR_POLICY, and
 * with --nbd-tls=on plain clients are served too. Real clients are in test/mount/nbd-tls.test.ts.
 */
import { afterAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { join } from "node:path";
import * as tls from "node:tls";
import type { NbdDevice } from "../../src/nbd/device.ts";
import { NbdServer, type NbdTls } from "../../src/nbd/server.ts";
import type { Logger } from "../../src/log.ts";
import { rejection, tempDir } from "../helpers/data.ts";
import { makeCreds } from "../helpers/tls-creds.ts";

const dir = tempDir("nbd-tls");
const creds = makeCreds(dir);
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const logged: string[] = [];
const log = { debug() {}, info: (m: string) => logged.push(m), warn: (m: string) => logged.push(m), error: (m: string) => logged.push(m) } as unknown as Logger;

const SIZE = 1 << 20;
const OPT = { EXPORT_NAME: 1, ABORT: 2, LIST: 3, STARTTLS: 5, INFO: 6, GO: 7, STRUCTURED_REPLY: 8 };
const REP = { ACK: 1, ERR_POLICY: 0x80000002, ERR_INVALID: 0x80000003, ERR_TLS_REQD: 0x80000005, ERR_UNSUP: 0x80000001 };

function memoryDevice(): NbdDevice {
  const bytes = new Uint8Array(SIZE);
  return {
    size: SIZE, blockSize: 4096, readOnly: false,
    read: async (offset, length) => [bytes.slice(offset, offset + length)],
    write: async (offset, data) => (bytes.set(data, offset), data.length),
    flush: async () => {}, trim: async () => {}, zero: async () => {}, prefetch: async () => {},
    extents: () => [],
  } as NbdDevice;
}

const x509: NbdTls = {
  required: true,
  creds: { kind: "x509", cert: creds.read(creds.serverCert), key: creds.read(creds.serverKey), ca: creds.read(creds.caCert) },
};

async function listen(t: NbdTls | undefined, timeoutMs?: number): Promise<NbdServer> {
  return NbdServer.listen({ kind: "tcp", host: "127.0.0.1", port: 0 }, memoryDevice(), { name: "disk", description: "", size: SIZE, blockSize: 4096, readOnly: false }, log, t, timeoutMs);
}

/** Bytes from a socket, taken in the sizes asked for; a take past the end rejects. */
class Peer {
  private chunks: Buffer = Buffer.alloc(0);
  private waiting: (() => void) | undefined;
  private over = false;
  readonly closed: Promise<void>;
  private stream: Socket | tls.TLSSocket;
  constructor(readonly raw: Socket) {
    this.stream = raw;
    let ended!: () => void;
    this.closed = new Promise((r) => (ended = r));
    raw.on("close", () => {
      this.over = true;
      ended();
      this.waiting?.();
    });
    raw.on("error", () => {});
    this.listen(raw);
  }
  private listen(s: Socket | tls.TLSSocket): void {
    s.on("data", (d: Buffer) => {
      this.chunks = Buffer.concat([this.chunks, d]);
      this.waiting?.();
    });
  }
  send(bytes: Uint8Array): void {
    this.stream.write(bytes);
  }
  async take(n: number): Promise<Buffer> {
    while (this.chunks.length < n) {
      if (this.over) throw new Error("the server closed the connection");
      await new Promise<void>((r) => (this.waiting = r));
    }
    const out = this.chunks.subarray(0, n);
    this.chunks = this.chunks.subarray(n);
    return out;
  }
  /** TLS over the same socket, as the client side. */
  async startTls(options: tls.ConnectionOptions): Promise<void> {
    this.raw.removeAllListeners("data");
    const t = tls.connect({ socket: this.raw, servername: "localhost", ca: creds.read(creds.caCert), ...options });
    t.on("error", () => {});
    this.listen(t);
    this.stream = t;
    await new Promise<void>((resolve, reject) => {
      t.once("secureConnect", () => resolve());
      t.once("error", reject);
      t.once("close", () => reject(new Error("closed during the TLS handshake")));
    });
  }
}

const u32 = (v: number) => [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
const option = (code: number, data: number[] = []) => new Uint8Array([...new TextEncoder().encode("IHAVEOPT"), ...u32(code), ...u32(data.length), ...data]);
const goData = (name = "disk") => [...u32(name.length), ...new TextEncoder().encode(name), 0, 0];

async function connect(server: NbdServer): Promise<Peer> {
  const p = new Peer(createConnection((server.address as { port: number }).port, "127.0.0.1"));
  await p.take(18); // NBDMAGIC, IHAVEOPT, handshake flags
  p.send(new Uint8Array(u32(3)));
  return p;
}

/** The option's replies up to the final one: its type. */
async function reply(p: Peer): Promise<number> {
  for (;;) {
    const head = await p.take(20);
    const type = head.readUInt32BE(12);
    await p.take(head.readUInt32BE(16));
    if (type !== 2 && type !== 3) return type;
  }
}

async function tlsUp(p: Peer, options: tls.ConnectionOptions = clientCert("client")): Promise<void> {
  p.send(option(OPT.STARTTLS));
  expect(await reply(p)).toBe(REP.ACK);
  await p.startTls(options);
}

function clientCert(name: string): tls.ConnectionOptions {
  const d = join(dir, name);
  return { cert: creds.read(join(d, "client-cert.pem")), key: creds.read(join(d, "client-key.pem")) };
}

/** GO, then a write and a read back of 4 KiB at 64 KiB. */
async function roundTrip(p: Peer): Promise<void> {
  p.send(option(OPT.GO, goData()));
  expect(await reply(p)).toBe(REP.ACK);
  const request = (type: number, handle: number, length: number) => new Uint8Array([...u32(0x25609513), 0, 0, 0, type, ...u32(0), ...u32(handle), ...u32(0), ...u32(65536), ...u32(length)]);
  const data = Buffer.alloc(4096, 0xa7);
  p.send(new Uint8Array([...request(1, 1, 4096), ...data]));
  expect((await p.take(16)).readUInt32BE(4)).toBe(0);
  p.send(request(0, 2, 4096));
  expect((await p.take(16)).readUInt32BE(4)).toBe(0);
  expect(await p.take(4096)).toEqual(data);
}

test("FORCEDTLS: options before TLS get NBD_REP_ERR_TLS_REQD, ABORT gets ACK", async () => {
  const server = await listen(x509);
  try {
    const p = await connect(server);
    for (const [code, data] of [[OPT.LIST, []], [OPT.GO, goData()], [OPT.INFO, goData()], [OPT.STRUCTURED_REPLY, []], [99, []]] as const) {
      p.send(option(code, [...data]));
      expect(await reply(p)).toBe(REP.ERR_TLS_REQD);
    }
    p.send(option(OPT.ABORT));
    expect(await reply(p)).toBe(REP.ACK);
  } finally {
    await server.stop();
  }
});

test("FORCEDTLS: EXPORT_NAME before TLS, which cannot be refused, gets a hang-up", async () => {
  const server = await listen(x509);
  try {
    const p = await connect(server);
    p.send(option(OPT.EXPORT_NAME, [...new TextEncoder().encode("disk")]));
    await p.closed;
    expect(await rejection(p.take(1))).toMatch("closed");
  } finally {
    await server.stop();
  }
});

test("STARTTLS with data is invalid; STARTTLS with plaintext behind it (an injection) gets a hang-up, no ACK", async () => {
  const server = await listen(x509);
  try {
    const p = await connect(server);
    p.send(option(OPT.STARTTLS, [1, 2, 3]));
    expect(await reply(p)).toBe(REP.ERR_INVALID);
    p.send(new Uint8Array([...option(OPT.STARTTLS), ...option(OPT.LIST)]));
    await p.closed;
    expect(await rejection(p.take(20))).toMatch("closed");
  } finally {
    await server.stop();
  }
});

test("after STARTTLS: options are served over TLS, a second STARTTLS is invalid, and data goes both ways", async () => {
  const server = await listen(x509);
  try {
    const p = await connect(server);
    await tlsUp(p);
    p.send(option(OPT.STARTTLS));
    expect(await reply(p)).toBe(REP.ERR_INVALID);
    p.send(option(OPT.LIST));
    expect(await reply(p)).toBe(REP.ACK);
    await roundTrip(p);
  } finally {
    await server.stop();
  }
});

test("a client whose certificate another CA signed, or with none, is refused; the server goes on serving others", async () => {
  const server = await listen(x509);
  try {
    for (const options of [clientCert("rogue"), {}]) {
      const bad = await connect(server);
      bad.send(option(OPT.STARTTLS));
      expect(await reply(bad)).toBe(REP.ACK);
      // TLS 1.3: the client learns of the refusal on its first read after its side of the handshake.
      const refused = bad.startTls(options).then(() => {
        bad.send(option(OPT.LIST));
        return reply(bad);
      });
      await rejection(refused);
      await bad.closed;
    }
    expect(logged.some((l) => /refused: TLS handshake failed/.test(l))).toBe(true);
    const good = await connect(server);
    await tlsUp(good);
    await roundTrip(good);
  } finally {
    await server.stop();
  }
});

test("a client that sends STARTTLS and then nothing is dropped when the handshake time is up", async () => {
  const server = await listen(x509, 300);
  try {
    const p = await connect(server);
    p.send(option(OPT.STARTTLS));
    expect(await reply(p)).toBe(REP.ACK);
    const started = Date.now();
    await p.closed;
    expect(Date.now() - started).toBeLessThan(3000);
  } finally {
    await server.stop();
  }
});

test("without TLS configured, STARTTLS gets NBD_REP_ERR_POLICY and the plain client goes on", async () => {
  const server = await listen(undefined);
  try {
    const p = await connect(server);
    p.send(option(OPT.STARTTLS));
    expect(await reply(p)).toBe(REP.ERR_POLICY);
    await roundTrip(p);
  } finally {
    await server.stop();
  }
});

test("TLS offered, not required (--nbd-tls=on): a plain client and a TLS client are both served", async () => {
  const server = await listen({ ...x509, required: false });
  try {
    await roundTrip(await connect(server));
    const secure = await connect(server);
    await tlsUp(secure);
    await roundTrip(secure);
  } finally {
    await server.stop();
  }
});

test("stopping the server does not wait for a TLS handshake under way (X.509 and PSK)", async () => {
  const psk: NbdTls = { required: true, creds: { kind: "psk", keys: new Map([["alice", creds.pskKey]]) } };
  for (const t of [x509, psk]) {
    const server = await listen(t);
    const p = await connect(server);
    p.send(option(OPT.STARTTLS));
    expect(await reply(p)).toBe(REP.ACK);
    const started = Date.now();
    await server.stop(); // the handshake would have 10 s
    expect(Date.now() - started).toBeLessThan(2000);
    await p.closed;
  }
});
