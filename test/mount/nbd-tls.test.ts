/**
 * NBD over TLS with clients nobody here wrote: qemu-img and qemu-io (tls-creds-x509 and
 * tls-creds-psk), nbdinfo and nbdcopy (nbds:// URIs, multi-conn), an OpenSSL client (Python's
 * ssl) that presents a certificate whatever CA the server asks for. Clients without TLS, with
 * another CA's certificate or none, or with a wrong key are refused, and the server goes on
 * serving. A capture of the loopback traffic (dumpcap) finds a canary written and read back in
 * the clear without TLS, and nowhere with it. nbd-client negotiates over TLS, and attaches a
 * /dev/nbdX where the kernel has the nbd module (where it has not, it stops after the negotiation,
 * at the kernel's netlink family). The binary under Bun, and the source under Deno.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { BINARY, pattern, runAsync, tempDir, waitFor } from "../helpers/disk.ts";
import { cleanupNbd, serveNbd, type NbdDisk } from "../helpers/nbd.ts";
import { requireCommands } from "../helpers/data.ts";
import { makeCreds } from "../helpers/tls-creds.ts";

const PYTHON = "/usr/bin/python3";
const DENO = join(import.meta.dir, "../../node_modules/.bin/deno");
const MAIN = join(import.meta.dir, "../../src/main.ts");
const QEMU = { "qemu-img": "qemu-utils", "qemu-io": "qemu-utils" };
const LIBNBD = { nbdinfo: "libnbd-bin", nbdcopy: "libnbd-bin" };
const dir = tempDir("nbd-tls-mount");
const creds = makeCreds(dir);
const scratch: string[] = [];
afterEach(async () => {
  await cleanupNbd();
  for (const d of scratch.splice(0)) rmSync(d, { recursive: true, force: true });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const X509 = [`--nbd-tls-cert=${creds.serverCert}`, `--nbd-tls-key=${creds.serverKey}`, `--nbd-tls-ca=${creds.caCert}`];
const PSK = [`--nbd-tls-psk=${creds.psk}`];
const DISK = ["--size=32M", "--blockSize=64k"];

async function ok(cmd: string[]): Promise<string> {
  const r = await runAsync(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}
/** The command fails; its stderr, for the reason. */
async function fails(cmd: string[]): Promise<string> {
  const r = await runAsync(cmd);
  if (r.code === 0) throw new Error(`${cmd.join(" ")} was let in: ${r.stdout}`);
  return r.stderr + r.stdout;
}

async function serve(flags: string[], command?: string[]): Promise<NbdDisk> {
  const d = tempDir("nbd-tls");
  scratch.push(d);
  return serveNbd([...DISK, ...flags], { dir: d, tcp: true, command });
}

const x509Uri = (s: NbdDisk, client = creds.client) => `nbds://127.0.0.1:${s.port}/file?tls-certificates=${client}`;
const pskUri = (s: NbdDisk, file = creds.psk, user = "alice") => `nbds://${user}@127.0.0.1:${s.port}/file?tls-psk-file=${file}`;
const qemuX509 = ["--object", `tls-creds-x509,id=tls0,dir=${creds.client},endpoint=client`];
const qemuPsk = (pskDir = dirname(creds.psk)) => ["--object", `tls-creds-psk,id=tls0,dir=${pskDir},username=alice,endpoint=client`];
const qemuImage = (s: NbdDisk) => `driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=${s.port},export=file,tls-creds=tls0`;

/** An OpenSSL client that always presents this certificate, STARTTLS then GO: what it got. */
const OPENSSL_PROBE = `
import socket, ssl, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.recv(18); s.sendall(struct.pack(">I", 3))
s.sendall(struct.pack(">QII", 0x49484156454F5054, 5, 0))
assert struct.unpack(">QIII", s.recv(20))[2] == 1
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
try:
    t = ctx.wrap_socket(s)
    t.sendall(struct.pack(">QII", 0x49484156454F5054, 7, 10) + struct.pack(">I", 4) + b"file" + struct.pack(">H", 0))
    got = t.recv(20)
    print("served" if got else "refused: closed")
except (ssl.SSLError, OSError) as e:
    print("refused:", e)
`;

/** nbdcopy a file in, and back out: the same bytes. */
async function copyInAndOut(uri: string, bytes: Uint8Array): Promise<void> {
  const d = tempDir("nbd-tls-copy");
  scratch.push(d);
  writeFileSync(join(d, "in"), bytes);
  await ok(["nbdcopy", join(d, "in"), uri]);
  await ok(["nbdcopy", uri, join(d, "out")]);
  const back = readFileSync(join(d, "out")).subarray(0, bytes.length);
  expect(Buffer.compare(back, bytes)).toBe(0);
}

describe("X.509 with client certificates", () => {
  test("qemu-img, qemu-io, nbdinfo and nbdcopy read and write; clients without TLS or without a certificate the CA signed are refused; others go on being served", async () => {
    requireCommands({ ...QEMU, ...LIBNBD, python3: "python3" });
    const s = await serve(X509);
    expect(s.log()).toMatch(/TLS required \(X\.509, client certificates required\)/);
    expect((await ok(["nbdinfo", "--size", x509Uri(s)])).trim()).toBe(String(32 << 20));
    expect(await ok(["qemu-img", "info", ...qemuX509, "--image-opts", qemuImage(s)])).toContain("virtual size: 32 MiB");
    await ok(["qemu-io", ...qemuX509, "--image-opts", qemuImage(s), "-c", "write -P 0xab 3M 1M"]);
    expect(await ok(["qemu-io", ...qemuX509, "--image-opts", qemuImage(s), "-c", "read -P 0xab 3M 1M"])).toContain("read 1048576/1048576");
    const image = join(s.dir, "image");
    writeFileSync(image, pattern(4 << 20, 7));
    await ok(["qemu-img", "convert", "-n", image, ...qemuX509, "--target-image-opts", `driver=raw,file.${qemuImage(s).replaceAll(",", ",file.")}`]);
    await copyInAndOut(x509Uri(s), pattern(16 << 20, 3)); // 4 connections at once

    expect(await fails(["nbdinfo", "--size", `nbd://127.0.0.1:${s.port}/file`])).toMatch(/server requires TLS/);
    expect(await fails(["qemu-img", "info", "--image-opts", `driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=${s.port},export=file`])).toMatch(/TLS/);
    // GnuTLS sends a certificate only when the server names its issuer: these come with none.
    await fails(["nbdinfo", "--size", x509Uri(s, creds.rogue)]);
    await fails(["nbdinfo", "--size", x509Uri(s, creds.noCert)]);
    const probe = await ok([PYTHON, "-c", OPENSSL_PROBE, String(s.port), join(creds.rogue, "client-cert.pem"), join(creds.rogue, "client-key.pem")]);
    expect(probe).toMatch(/^refused/);
    const good = await ok([PYTHON, "-c", OPENSSL_PROBE, String(s.port), join(creds.client, "client-cert.pem"), join(creds.client, "client-key.pem")]);
    expect(good.trim()).toBe("served");
    expect((await ok(["nbdinfo", "--size", x509Uri(s)])).trim()).toBe(String(32 << 20));
    expect(s.log()).toMatch(/refused: TLS handshake failed/);
    await s.stop();
  });

  test("over a Unix socket too, with a server certificate only", async () => {
    requireCommands({ ...QEMU, ...LIBNBD });
    const d = tempDir("nbd-tls-unix");
    scratch.push(d);
    const s = await serveNbd([...DISK, `--nbd-tls-cert=${creds.serverCert}`, `--nbd-tls-key=${creds.serverKey}`], { dir: d });
    expect((await ok(["nbdinfo", "--size", `nbds+unix:///file?socket=${s.socket}&tls-certificates=${creds.noCert}`])).trim()).toBe(String(32 << 20));
    const image = `driver=nbd,server.type=unix,server.path=${s.socket},export=file,tls-creds=tls0,tls-hostname=localhost`;
    expect(await ok(["qemu-io", ...qemuX509, "--image-opts", image, "-c", "write -P 0x5a 0 64k", "-c", "read -P 0x5a 0 64k"])).toContain("read 65536/65536");
    await s.stop();
  });
});

describe("pre-shared keys", () => {
  test("qemu (tls-creds-psk) and libnbd (tls-psk-file) read and write; a wrong key, an unknown identity, a certificate client and a plain one are refused", async () => {
    requireCommands({ ...QEMU, ...LIBNBD });
    const s = await serve(PSK);
    expect(s.log()).toMatch(/TLS required \(pre-shared keys\)/);
    expect(await ok(["qemu-img", "info", ...qemuPsk(), "--image-opts", qemuImage(s)])).toContain("virtual size: 32 MiB");
    expect(await ok(["qemu-io", ...qemuPsk(), "--image-opts", qemuImage(s), "-c", "write -P 0xc3 1M 2M", "-c", "read -P 0xc3 1M 2M"])).toContain("read 2097152/2097152");
    await copyInAndOut(pskUri(s), pattern(16 << 20, 5));

    await fails(["nbdinfo", "--size", pskUri(s, creds.wrongPsk)]);
    const mallory = join(s.dir, "mallory.psk");
    writeFileSync(mallory, readFileSync(creds.psk, "utf8").replace("alice:", "mallory:"));
    await fails(["nbdinfo", "--size", pskUri(s, mallory, "mallory")]);
    await fails(["nbdinfo", "--size", x509Uri(s)]);
    expect(await fails(["nbdinfo", "--size", `nbd://127.0.0.1:${s.port}/file`])).toMatch(/server requires TLS/);
    expect(await fails(["qemu-img", "info", ...qemuPsk(dirname(creds.wrongPsk)), "--image-opts", qemuImage(s)])).toMatch(/TLS|alert/i);
    expect((await ok(["nbdinfo", "--size", pskUri(s)])).trim()).toBe(String(32 << 20));
    const log = s.log();
    expect(log).toMatch(/refused: TLS handshake failed: wrong key for PSK identity 'alice'/);
    expect(log).toMatch(/refused: TLS handshake failed: unknown PSK identity 'mallory'/);
    expect(log).toMatch(/refused: TLS handshake failed: the client offers no pre-shared key/);
    await s.stop();
  });
});

describe("nbd-client", () => {
  const clientTls = ["-certfile", join(creds.client, "client-cert.pem"), "-keyfile", join(creds.client, "client-key.pem"), "-cacertfile", creds.caCert, "-tlshostname", "localhost"];
  /** A /dev/nbdX nobody has attached, when the kernel has the nbd module. */
  const freeDevice = () => (existsSync("/sys/module/nbd") ? readdirSync("/sys/block").find((d) => /^nbd\d+$/.test(d) && !existsSync(`/sys/block/${d}/pid`)) : undefined);

  test("X.509: negotiates over TLS, and reads and writes where the kernel has nbd; without TLS or without a certificate it is refused", async () => {
    requireCommands({ "nbd-client": "nbd-client", ...LIBNBD });
    const s = await serve(X509);
    const device = freeDevice();
    if (device) {
      const dev = `/dev/${device}`;
      await ok(["nbd-client", "127.0.0.1", String(s.port), dev, "-N", "file", ...clientTls]);
      try {
        const image = join(s.dir, "image");
        writeFileSync(image, pattern(1 << 20, 17));
        await ok(["dd", `if=${image}`, `of=${dev}`, "bs=1M", "count=1", "oflag=direct"]);
        await ok(["dd", `if=${dev}`, `of=${image}.back`, "bs=1M", "count=1", "iflag=direct"]);
        expect(Buffer.compare(readFileSync(`${image}.back`), readFileSync(image))).toBe(0);
      } finally {
        await runAsync(["nbd-client", "-d", dev]);
      }
    } else {
      // The negotiation (STARTTLS, the handshake, the export's size) is done in user space; the
      // device is handed to the kernel after it.
      const r = await runAsync(["timeout", "20", "nbd-client", "127.0.0.1", String(s.port), "/dev/nbd0", "-N", "file", ...clientTls, "-nofork"]);
      expect(r.stdout + r.stderr).toContain("size = 32MB");
      expect(r.stdout + r.stderr).toMatch(/netlink/);
    }
    const plain = await runAsync(["timeout", "20", "nbd-client", "127.0.0.1", String(s.port), "/dev/nbd0", "-N", "file", "-nofork"]);
    expect(plain.stdout + plain.stderr).toMatch(/this server requires TLS/);
    const noCert = await runAsync(["timeout", "20", "nbd-client", "127.0.0.1", String(s.port), "/dev/nbd0", "-N", "file", "-cacertfile", creds.caCert, "-tlshostname", "localhost", "-nofork"]);
    expect(noCert.stdout + noCert.stderr).not.toContain("size =");
    expect(s.log()).toMatch(/refused: TLS handshake failed/);
    expect((await ok(["nbdinfo", "--size", x509Uri(s)])).trim()).toBe(String(32 << 20));
    await s.stop();
  });
});

describe("the traffic on the wire", () => {
  /** Writes and reads back a canary through `uri` while dumpcap records the port: how often the capture holds it. */
  async function canaryOnTheWire(s: NbdDisk, uri: string): Promise<number> {
    const pcap = join(s.dir, "capture.pcap");
    const dumpcap = spawn("dumpcap", ["-i", "lo", "-f", `tcp port ${s.port}`, "-w", pcap], { stdio: ["ignore", "ignore", "pipe"] });
    let said = "";
    dumpcap.stderr.on("data", (d) => (said += d));
    const exited = new Promise((r) => dumpcap.on("exit", r));
    try {
      await waitFor("dumpcap to capture", () => said.includes("Capturing on"), 10_000);
      const canary = new TextEncoder().encode("S3BACKER-CLEARTEXT-CANARY:".repeat(40330)).subarray(0, 1 << 20);
      await copyInAndOut(uri, canary);
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      dumpcap.kill("SIGTERM");
      await exited;
    }
    const captured = readFileSync(pcap);
    expect(captured.length).toBeGreaterThan(1 << 20); // the transfer was recorded
    let found = 0;
    for (let at = captured.indexOf("S3BACKER-CLEARTEXT-CANARY:"); at >= 0; at = captured.indexOf("S3BACKER-CLEARTEXT-CANARY:", at + 1)) found++;
    return found;
  }

  test("without TLS the canary is in the capture (so the check can fail); with X.509 and with PSK it is nowhere", async () => {
    requireCommands({ ...LIBNBD, dumpcap: "wireshark-common" });
    const plain = await serve([]);
    expect(await canaryOnTheWire(plain, `nbd://127.0.0.1:${plain.port}/file`)).toBeGreaterThan(10_000);
    await plain.stop();
    const x509 = await serve(X509);
    expect(await canaryOnTheWire(x509, x509Uri(x509))).toBe(0);
    await x509.stop();
    const psk = await serve(PSK);
    expect(await canaryOnTheWire(psk, pskUri(psk))).toBe(0);
    await psk.stop();
  });
});

describe("the source under Deno", () => {
  test("X.509 with client certificates and PSK: nbdcopy in and out; a certificate from another CA refused", async () => {
    requireCommands({ ...LIBNBD, python3: "python3" });
    const command = [DENO, "run", "-A", MAIN];
    const x509 = await serve(X509, command);
    await copyInAndOut(x509Uri(x509), pattern(8 << 20, 11));
    const probe = await ok([PYTHON, "-c", OPENSSL_PROBE, String(x509.port), join(creds.rogue, "client-cert.pem"), join(creds.rogue, "client-key.pem")]);
    expect(probe).toMatch(/^refused/);
    await x509.stop();
    const psk = await serve(PSK, command);
    await copyInAndOut(pskUri(psk), pattern(8 << 20, 13));
    await fails(["nbdinfo", "--size", pskUri(psk, creds.wrongPsk)]);
    await psk.stop();
  });
});

describe("bad input is one line", () => {
  // In the foreground, and under `timeout` in case it starts after all.
  const start = (flags: string[], address = "tcp:127.0.0.1:0") => runAsync(["timeout", "20", BINARY, "--nbd", "--test", ...DISK, "-f", ...flags, ":memory:", address]);

  test("a port already taken", async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
    try {
      const port = (taken.address() as { port: number }).port;
      const r = await start(X509, `tcp:127.0.0.1:${port}`);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`s3backer: cannot listen on tcp:127.0.0.1:${port}: the address is in use (another server has that port)\n`);
    } finally {
      taken.close();
    }
  });

  test("a key file the user cannot read", async () => {
    requireCommands({ setpriv: "util-linux" });
    const d = tempDir("nbd-tls-unreadable");
    scratch.push(d);
    chmodSync(d, 0o755);
    const cert = join(d, "cert.pem");
    const key = join(d, "key.pem");
    writeFileSync(cert, readFileSync(creds.serverCert), { mode: 0o644 });
    writeFileSync(key, readFileSync(creds.serverKey), { mode: 0o600 });
    // A copy of the binary the other user can run wherever the checkout is (a home may be 0700).
    const binary = join(d, "s3backer");
    copyFileSync(BINARY, binary);
    chmodSync(binary, 0o755);
    const r = await runAsync(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "timeout", "20", binary, "--nbd", "--test", ...DISK, "-f", `--nbd-tls-cert=${cert}`, `--nbd-tls-key=${key}`, ":memory:", "tcp:127.0.0.1:0"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`s3backer: --nbd-tls-key=${key}: permission denied\n`);
  });

  test("a missing key, a key of another certificate, a malformed PSK file", async () => {
    const cases: [string[], RegExp][] = [
      [[`--nbd-tls-cert=${creds.serverCert}`, `--nbd-tls-key=${dir}/missing.pem`], /^s3backer: --nbd-tls-key=.*missing.pem: no such file\n$/],
      [[`--nbd-tls-cert=${creds.serverCert}`, `--nbd-tls-key=${join(dir, "pki", "client-key.pem")}`], /^s3backer: --nbd-tls-key=.*: does not match the certificate in --nbd-tls-cert=.*\n$/],
      [[`--nbd-tls-psk=${creds.serverCert}`], /^s3backer: --nbd-tls-psk=.* line 1: expected identity:hexkey\n$/],
    ];
    for (const [flags, line] of cases) {
      const r = await start(flags);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(line);
    }
  });
});
