/**
 * NBD against clients that test its promises: FLUSH makes durable what writeback clients wrote
 * without FUA (qemu-io -t writeback; libnbd writing on one connection and flushing on another),
 * across kill -9; a hostile client (helpers/nbd-hostile.py) that the server survives while it
 * goes on serving a well-behaved one; and one that floods the handshake with options, reading
 * nothing, before any authentication.
 */
import { afterEach, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { killHard, runAsync, tempDir } from "../helpers/disk.ts";
import { cleanupNbd, serveNbd } from "../helpers/nbd.ts";
import { floodOptions, peakResident, resident } from "../helpers/nbd-flood.ts";
import { makeCreds } from "../helpers/tls-creds.ts";

const PYTHON = "/usr/bin/python3"; // Debian's, which has python3-libnbd
const dirs: string[] = [];
afterEach(async () => {
  await cleanupNbd();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const scratch = (tag: string) => {
  const d = tempDir(tag);
  dirs.push(d);
  return d;
};

// Dirty blocks rest a minute before they are written back: only a FLUSH stores them sooner.
const ARGS = ["--size=8M", "--blockSize=64k", "--blockCacheWriteDelay=60000"];

async function ok(cmd: string[]): Promise<string> {
  const r = await runAsync(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

test("a FLUSH from a writeback client (qemu-io -t writeback: writes without FUA) is durable across kill -9", async () => {
  const dir = scratch("nbd-wb");
  const disk = await serveNbd(ARGS, { dir });
  await ok(["qemu-io", "-t", "writeback", "-f", "raw", "-c", "write -P 0x77 65536 262144", "-c", "flush", disk.qemu]);
  await killHard(disk.pid);
  const again = await serveNbd([...ARGS, "--force"], { dir });
  await ok(["qemu-io", "-f", "raw", "-c", "read -P 0x77 65536 262144", "-c", "read -P 0 0 65536", again.qemu]);
});

test("a FLUSH on one connection makes another connection's writes durable (multi-conn), across kill -9 with both still open", async () => {
  const dir = scratch("nbd-mc");
  const disk = await serveNbd(ARGS, { dir });
  const script = `
import nbd, sys, time
a, b = nbd.NBD(), nbd.NBD()
a.connect_uri(sys.argv[1])
b.connect_uri(sys.argv[1])
a.pwrite(b"\\x5c" * 262144, 1048576)  # no FUA
b.pwrite(b"\\xc5" * 65536, 2097152)
b.flush()
print("flushed", flush=True)
time.sleep(60)
`;
  const client = Bun.spawn([PYTHON, "-c", script, disk.uri], { stdout: "pipe", stderr: "pipe" });
  try {
    const out = client.stdout.getReader();
    let said = "";
    while (!said.includes("flushed")) {
      const { value, done } = await out.read();
      if (done) throw new Error(`the client ended early: ${said}${await new Response(client.stderr).text()}`);
      said += new TextDecoder().decode(value);
    }
    await killHard(disk.pid); // both connections still open
  } finally {
    client.kill("SIGKILL");
    await client.exited;
  }
  const again = await serveNbd([...ARGS, "--force"], { dir });
  await ok(["qemu-io", "-f", "raw", "-c", "read -P 0x5c 1048576 262144", "-c", "read -P 0xc5 2097152 65536", again.qemu]);
});

test("a hostile client (malformed handshakes, bad lengths, out-of-range and oversize requests, disconnects, requests after DISC): every case answered as the protocol says, the server stays up and serves another client all along", async () => {
  const disk = await serveNbd(["--size=64M", "--blockSize=64k"]);
  const r = await runAsync([PYTHON, join(import.meta.dir, "../helpers/nbd-hostile.py"), disk.socket]);
  console.log(r.stdout.trim().split("\n").filter((l) => l.includes("bystander")).join("\n"));
  const failed = r.stdout.split("\n").filter((l) => l.includes('"ok": false'));
  expect({ failed, stderr: r.stderr, code: r.code }).toEqual({ failed: [], stderr: "", code: 0 });
  expect(r.stdout.split("\n").filter((l) => l.includes('"ok": true')).length).toBe(26);
  expect(disk.log()).not.toMatch(/ERROR|uncaught|TypeError|RangeError/);
}, 120_000);

test("a client that floods the handshake with options and reads nothing (TLS required or not) is hung up on after 32, memory stays put, another client is served meanwhile", async () => {
  const MIB = 2 ** 20;
  const creds = makeCreds(scratch("nbd-hs-creds"));
  for (const tls of [true, false]) {
    const disk = await serveNbd(["--size=16M", ...(tls ? [`--nbd-tls-psk=${creds.psk}`] : [])], { tcp: true });
    const before = resident(disk.pid);
    const uri = tls ? `nbds://alice@127.0.0.1:${disk.port}/file?tls-psk-file=${creds.psk}` : disk.uri;
    // 1M options, 16 MiB: each answered with 20-100 bytes nobody reads (the unbounded server queued them all, +340 MiB).
    const [flood, size] = await Promise.all([floodOptions(disk.port, { count: 1 << 20, seconds: 20 }), ok(["nbdinfo", "--size", uri])]);
    const grown = peakResident(disk.pid) - before;
    console.log(`${tls ? "TLS required" : "no TLS"}: ${flood.sent} options sent, hung up ${flood.hungUp} after ${flood.elapsedMs.toFixed(0)} ms; RSS ${(before / MIB).toFixed(0)} MiB, peak +${(grown / MIB).toFixed(1)} MiB`);
    expect({ hungUp: flood.hungUp, grownBy64MiB: grown >= 64 * MIB, served: size.trim() }).toEqual({ hungUp: true, grownBy64MiB: false, served: String(16 * MIB) });
    expect(disk.log().match(/32 options and no export chosen: hanging up/g)?.length).toBe(1);
    await ok(["nbdinfo", "--size", uri]); // and after
    await disk.stop();
  }
}, 120_000);
