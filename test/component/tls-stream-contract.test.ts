/**
 * What NBD's STARTTLS needs of the runtime's stream server, checked under Bun and Deno alike: an
 * accepted connection that has spoken in the clear turns into a TLS server session in place
 * (X.509, with client certificates checked; PSK through the TypeScript engine), refuses clients
 * that do not authenticate, gives up on a handshake that does not come, and, paused, stops
 * reading (the peer's sends block) until resumed. Bun's part rests on `upgradeTLS({ isServer })`,
 * which its types do not declare: this test is what notices if it goes.
 */
import { afterAll, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import * as tls from "node:tls";
import { join } from "node:path";
import { runtime } from "../../src/runtime/index.ts";
import type { AcceptedConnection, StreamListener, TlsServerCreds, TlsSessionInfo } from "../../src/runtime/runtime.ts";
import { rejection, requireCommands, tempDir, waitFor } from "../helpers/data.ts";
import { makeCreds } from "../helpers/tls-creds.ts";

const dir = tempDir("tls-contract");
const creds = makeCreds(dir);
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const x509 = (ca: boolean): TlsServerCreds => ({ kind: "x509", cert: creds.read(creds.serverCert), key: creds.read(creds.serverKey), ca: ca ? creds.read(creds.caCert) : undefined });
const psk: TlsServerCreds = { kind: "psk", keys: new Map([["alice", creds.pskKey]]) };

interface Served {
  listener: StreamListener;
  connection: Promise<AcceptedConnection>;
  /** Resolves or rejects as the server's startTls does. */
  tls: Promise<TlsSessionInfo>;
  received: () => Uint8Array;
  closed: Promise<string>;
}

/**
 * A server that greets in the clear ("HELLO\n"), waits for "STARTTLS\n", answers "GO\n" and starts
 * TLS in the same turn (as NBD does); `immediate` starts TLS at once instead (for command-line
 * clients that cannot speak first in the clear). Once TLS is up it echoes, unless `pauseAtFirst`.
 */
async function serve(c: TlsServerCreds, o: { immediate?: boolean; pauseAtFirst?: boolean; timeoutMs?: number } = {}): Promise<Served> {
  let chunks: Uint8Array[] = [];
  let gotConnection!: (c: AcceptedConnection) => void;
  const connection = new Promise<AcceptedConnection>((r) => (gotConnection = r));
  let settle!: { resolve: (i: TlsSessionInfo) => void; reject: (e: Error) => void };
  const tlsDone = new Promise<TlsSessionInfo>((resolve, reject) => (settle = { resolve, reject }));
  tlsDone.catch(() => {});
  let closedWhy!: (why: string) => void;
  const closed = new Promise<string>((r) => (closedWhy = r));
  let secure = false;
  const start = (conn: AcceptedConnection) => {
    conn.startTls(c, o.timeoutMs ?? 5000).then((info) => {
      secure = true;
      settle.resolve(info);
    }, settle.reject);
  };
  const listener = await runtime.listenStream({ host: "127.0.0.1", port: 0 }, (conn) => {
    gotConnection(conn);
    if (o.immediate) start(conn);
    else conn.write(new TextEncoder().encode("HELLO\n"));
    return {
      data(chunk) {
        if (!secure && !o.immediate) {
          expect(new TextDecoder().decode(chunk)).toBe("STARTTLS\n");
          conn.write(new TextEncoder().encode("GO\n"));
          return start(conn);
        }
        if (o.pauseAtFirst && chunks.length === 0) conn.pause();
        chunks.push(chunk);
        if (!o.pauseAtFirst) conn.write(chunk);
      },
      closed: (why) => closedWhy(why),
    };
  });
  return { listener, connection, tls: tlsDone, received: () => Buffer.concat(chunks), closed };
}

/** A client that reads "HELLO", asks for STARTTLS, reads "GO", then does TLS over the same socket. */
async function startTlsClient(port: number, options: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  const raw = createConnection(port, "127.0.0.1");
  const read = (expected: string) =>
    new Promise<void>((resolve, reject) => {
      raw.once("data", (d: Uint8Array) => (new TextDecoder().decode(d) === expected ? resolve() : reject(new Error(`got ${d}`))));
      raw.once("error", reject);
    });
  await read("HELLO\n");
  raw.write("STARTTLS\n");
  await read("GO\n");
  const t = tls.connect({ socket: raw as Socket, servername: "localhost", ca: creds.read(creds.caCert), ...options });
  t.on("error", () => {});
  return t;
}

const clientCert = (d: string) => ({ cert: creds.read(join(d, "client-cert.pem")), key: creds.read(join(d, "client-key.pem")) });

test("X.509 after plain bytes both ways: data both ways, and the client's certificate is checked and named", async () => {
  const s = await serve(x509(true));
  try {
    const t = await startTlsClient(s.listener.port!, clientCert(creds.client));
    const info = await s.tls;
    expect(info.peer).toBe("CN=client1");
    expect(info.protocol).toMatch(/^TLSv1\.[23]$/);
    const echoed = new Promise<string>((r) => t.once("data", (d: Uint8Array) => r(new TextDecoder().decode(d))));
    t.write("over TLS");
    expect(await echoed).toBe("over TLS");
    expect(new TextDecoder().decode(s.received())).toBe("over TLS");
    t.destroy();
  } finally {
    s.listener.close();
  }
});

test("X.509 with a CA: a client without a certificate, or with one another CA signed, is refused", async () => {
  for (const options of [{}, clientCert(creds.rogue)]) {
    const s = await serve(x509(true));
    try {
      const t = await startTlsClient(s.listener.port!, options);
      t.write("let me in");
      expect(await rejection(s.tls)).toMatch(/TLS handshake failed/);
      expect(s.received().length).toBe(0);
      await s.closed;
      t.destroy();
    } finally {
      s.listener.close();
    }
  }
});

test("PSK through the engine: gnutls-cli with the right key gets its bytes echoed; with a wrong key it is refused", async () => {
  requireCommands({ "gnutls-cli": "gnutls-bin" });
  const gnutls = (key: Uint8Array, port: number, input: string) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn("gnutls-cli", [`--pskusername=alice`, `--pskkey=${Buffer.from(key).toString("hex")}`, "--priority=NORMAL:-KX-ALL:+ECDHE-PSK:+PSK", "-p", String(port), "127.0.0.1"]);
      let out = "";
      p.stdout.on("data", (d) => (out += d));
      p.stdin.end(input);
      p.on("close", (code) => resolve({ code, out }));
    });
  const ok = await serve(psk, { immediate: true });
  try {
    const r = await gnutls(creds.pskKey, ok.listener.port!, "psk line\n");
    expect((await ok.tls).peer).toBe("PSK identity 'alice'");
    expect(r.out).toContain("psk line");
  } finally {
    ok.listener.close();
  }
  const wrong = await serve(psk, { immediate: true });
  try {
    const r = await gnutls(creds.pskKey.map((b) => b ^ 1), wrong.listener.port!, "psk line\n");
    expect(await rejection(wrong.tls)).toMatch(/wrong key for PSK identity 'alice'/);
    expect(r.code).not.toBe(0);
    expect(wrong.received().length).toBe(0);
  } finally {
    wrong.listener.close();
  }
});

test("a client that starts TLS and then says nothing is dropped when the handshake time is up", async () => {
  for (const c of [x509(false), psk]) {
    const s = await serve(c, { timeoutMs: 300 });
    try {
      const raw = createConnection(s.listener.port!, "127.0.0.1");
      raw.on("data", (d: Uint8Array) => new TextDecoder().decode(d) === "HELLO\n" && raw.write("STARTTLS\n"));
      const clientSawClose = new Promise<void>((r) => raw.on("close", () => r()));
      raw.on("error", () => {});
      const started = Date.now();
      expect(await rejection(s.tls)).toMatch(/within 0.3 s|timed out/);
      expect(Date.now() - started).toBeLessThan(3000);
      await clientSawClose;
    } finally {
      s.listener.close();
    }
  }
});

test("a paused TLS connection (X.509 or PSK) takes no more: the client's sends block; resumed, every byte comes, in order", async () => {
  const size = 32 << 20;
  const bytes = Uint8Array.from({ length: size }, (_, i) => i & 0xff);
  for (const [c, how] of [[x509(false), []], [psk, ["-psk_identity", "alice", "-psk", Buffer.from(creds.pskKey).toString("hex")]]] as const) {
    const s = await serve(c, { immediate: true, pauseAtFirst: true });
    // openssl s_client sends what it reads from its stdin: what it took from us shows whether it is held back.
    const client = spawn("openssl", ["s_client", "-quiet", "-nocommands", "-tls1_3", ...how, "-connect", `127.0.0.1:${s.listener.port}`], { stdio: ["pipe", "ignore", "ignore"] });
    try {
      let taken = 0;
      for (let at = 0; at < size; at += 1 << 20) client.stdin.write(bytes.subarray(at, at + (1 << 20)), () => (taken += 1 << 20));
      await s.tls;
      await new Promise((r) => setTimeout(r, 1000));
      const held = s.received().length;
      expect(held).toBeGreaterThan(0);
      expect(held).toBeLessThan(8 << 20);
      expect({ how: how.length ? "psk" : "x509", taken: taken < 16 << 20 }).toEqual({ how: how.length ? "psk" : "x509", taken: true });
      (await s.connection).resume();
      await waitFor("every byte", () => s.received().length >= size, 60_000);
      const got = s.received();
      let wrong = 0;
      for (let i = 0; i < size; i++) if (got[i] !== (i & 0xff)) wrong++;
      expect({ length: got.length, wrong }).toEqual({ length: size, wrong: 0 });
    } finally {
      client.kill();
      s.listener.close();
    }
  }
});
