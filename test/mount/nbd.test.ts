/**
 * NBD mode against clients nobody here wrote: qemu-io, qemu-img, nbdinfo, nbdcopy, libnbd's
 * Python binding, and qemu-storage-daemon's FUSE export of an NBD disk with ext4 on it (libnbd's
 * own nbdfuse is not packaged by Debian). Every tool is run without blocking this process, whose
 * S3 server some servers use.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BINARY, blockFiles, killHard, pattern, runAsync, tempDir, waitFor } from "../helpers/disk.ts";
import { cleanupNbd, serveNbd } from "../helpers/nbd.ts";
import { embeddedPeer, freshBucket, peerArgs, startEmbedded } from "../helpers/s3.ts";
import type { S3Server } from "../../src/s3server/s3-server.ts";

const PYTHON = "/usr/bin/python3"; // Debian's, which has python3-libnbd
const dirs: string[] = [];
const scratch = (tag: string) => {
  const d = tempDir(tag);
  dirs.push(d);
  return d;
};

/** Whether a server accepts a connection on the Unix socket at `path`. */
async function accepts(path: string): Promise<boolean> {
  try {
    const socket = await Bun.connect({ unix: path, socket: { data() {} } });
    socket.end();
    return true;
  } catch {
    return false;
  }
}

async function ok(cmd: string[]): Promise<string> {
  const r = await runAsync(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

let server: S3Server;
beforeAll(() => {
  server = startEmbedded();
});
afterEach(async () => {
  await cleanupNbd();
  for (const d of dirs.splice(0)) {
    await runAsync(["umount", "-l", join(d, "mnt")]);
    rmSync(d, { recursive: true, force: true });
  }
});
afterAll(() => server.stop());

describe("NBD: qemu-io", () => {
  test("patterns at unaligned offsets and across blocks read back; discard and write -z read as zeros and delete objects", async () => {
    const dir = scratch("nbd-qemu-io");
    const disk = await serveNbd(["--size=16M", "--blockSize=64k", "--listBlocks"], { dir });
    // qemu keeps to the advertised 512-byte minimum by reading and rewriting the edges itself.
    await ok(["qemu-io", "-f", "raw",
      "-c", "write -P 0x5a 1000 200000",
      "-c", "write -P 0xa5 131071 3",
      "-c", "write -P 0x33 1048576 1048576",
      "-c", "flush",
      disk.qemu]);
    await ok(["qemu-io", "-f", "raw",
      "-c", "read -P 0x5a 1000 130071",
      "-c", "read -P 0xa5 131071 3",
      "-c", "read -P 0x5a 131074 69926",
      "-c", "read -P 0 0 1000",
      "-c", "read -P 0 201000 800000",
      "-c", "read -P 0x33 1048576 1048576",
      disk.qemu]);
    await disk.stop();
    const written = blockFiles(disk.blocks);
    expect(written.length).toBe(4 + 16); // blocks 0-3, and 16-31

    const again = await serveNbd(["--size=16M", "--blockSize=64k", "--listBlocks"], { dir });
    await ok(["qemu-io", "-f", "raw", "-c", "discard 1048576 524288", "-c", "write -z 1572864 524288", "-c", "flush", again.qemu]);
    await ok(["qemu-io", "-f", "raw", "-c", "read -P 0 1048576 1048576", "-c", "read -P 0x5a 1000 130071", again.qemu]);
    await again.stop();
    expect(blockFiles(disk.blocks)).toEqual(written.slice(0, 4));
  });

  test("a FLUSH is durable across kill -9", async () => {
    const dir = scratch("nbd-kill");
    const disk = await serveNbd(["--size=8M", "--blockSize=64k"], { dir });
    await ok(["qemu-io", "-f", "raw", "-c", "write -P 0x77 65536 262144", "-c", "flush", disk.qemu]);
    await killHard(disk.pid);
    // The mounted flag outlived the process: --force takes the disk over.
    const again = await serveNbd(["--size=8M", "--blockSize=64k", "--force"], { dir });
    await ok(["qemu-io", "-f", "raw", "-c", "read -P 0x77 65536 262144", "-c", "read -P 0 0 65536", again.qemu]);
  });
});

describe("NBD: qemu-img", () => {
  test("convert of a sparse image, compare, and a qcow2 inside the export that checks clean", async () => {
    const dir = scratch("nbd-qemu-img");
    const image = join(dir, "sparse.img");
    writeFileSync(image, new Uint8Array(0));
    await ok(["truncate", "-s", "32M", image]);
    for (const [at, seed] of [[0, 1], [5 << 20, 2], [(20 << 20) + 12345, 3]] as const) {
      await ok(["dd", `of=${image}`, "bs=1", `seek=${at}`, "conv=notrunc", "status=none", `if=${writePattern(dir, seed, 70_000)}`]);
    }
    const disk = await serveNbd(["--size=32M", "--blockSize=64k", "--listBlocks"], { dir });
    await ok(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", image, disk.qemu]);
    await ok(["qemu-img", "compare", "-f", "raw", "-F", "raw", image, disk.qemu]);
    await disk.stop();
    // Sparse: only the blocks holding data were stored.
    expect(blockFiles(disk.blocks).length).toBeLessThanOrEqual(2 + 2 + 3);

    const again = await serveNbd(["--size=32M", "--blockSize=64k"], { dir });
    await ok(["qemu-img", "create", "-f", "qcow2", again.qemu, "24M"]);
    await ok(["qemu-io", "-f", "qcow2", "-c", "write -P 0x42 1M 3M", "-c", "read -P 0x42 1M 3M", again.qemu]);
    await ok(["qemu-img", "check", "-f", "qcow2", again.qemu]);
  });
});

describe("NBD: libnbd tools", () => {
  test("nbdinfo --map shows the holes, nbdcopy both ways is byte-equal", async () => {
    const dir = scratch("nbd-libnbd");
    const disk = await serveNbd(["--size=8M", "--blockSize=64k", "--listBlocks"], { dir });
    const source = join(dir, "source.img");
    writeFileSync(source, new Uint8Array(8 << 20));
    const bytes = pattern(300_000, 9);
    const img = readFileSync(source);
    img.set(bytes, 2 << 20);
    writeFileSync(source, img);
    await ok(["nbdcopy", source, disk.uri]);
    const map = await ok(["nbdinfo", "--map", disk.uri]);
    // Block 32 to 36 hold data (300,000 bytes from 2 MiB); the rest are holes.
    expect(map).toMatch(/^\s*0\s+2097152\s+3\s+hole,zero$/m);
    expect(map).toMatch(/^\s*2097152\s+327680\s+0\s+data$/m);
    expect(map).toMatch(/^\s*2424832\s+5963776\s+3\s+hole,zero$/m);
    const back = join(dir, "back.img");
    await ok(["nbdcopy", disk.uri, back]);
    expect(Bun.hash(readFileSync(back))).toBe(Bun.hash(readFileSync(source)));
  });

  test("protocol edge cases (libnbd and raw sockets): each gets the protocol's answer, and the server stays up", async () => {
    const disk = await serveNbd(["--size=64M", "--blockSize=64k", "--listBlocks"]);
    const r = await runAsync([PYTHON, join(import.meta.dir, "../helpers/nbd-edge.py"), disk.socket]);
    const failed = r.stdout.split("\n").filter((l) => l.includes('"ok": false'));
    expect({ failed, stderr: r.stderr, code: r.code }).toEqual({ failed: [], stderr: "", code: 0 });
    expect(r.stdout.split("\n").filter((l) => l.includes('"ok": true')).length).toBe(18);
  });
});

describe("NBD: ext4 over S3", () => {
  test("ext4 through qemu-storage-daemon's FUSE export, e2fsck clean after a fresh server process", async () => {
    const dir = scratch("nbd-ext4");
    const peer = embeddedPeer(server);
    const bucket = await freshBucket(peer, "nbdext4");
    const args = [...peerArgs(peer), "--size=128M", "--blockSize=128k", "--listBlocks"];
    const disk = await serveNbd(args, { dir, source: bucket });
    const exported = join(dir, "exported");
    const mnt = join(dir, "mnt");
    mkdirSync(mnt);
    const tree = join(import.meta.dir, "../../src");
    await withFuseExport(disk.socket, exported, async () => {
      await ok(["mkfs.ext4", "-q", "-F", exported]);
      await ok(["mount", "-o", "loop", exported, mnt]);
      try {
        await ok(["cp", "-r", tree, join(mnt, "src")]);
      } finally {
        await ok(["umount", mnt]);
      }
    });
    await disk.stop();

    const again = await serveNbd(args, { dir, source: bucket });
    await withFuseExport(again.socket, exported, async () => {
      await ok(["e2fsck", "-fn", exported]);
      await ok(["mount", "-o", "loop,ro", exported, mnt]);
      try {
        await ok(["diff", "-r", tree, join(mnt, "src")]);
      } finally {
        await ok(["umount", mnt]);
      }
    });
  });
});

describe("NBD: a server that fails", () => {
  test("reads that cannot be verified are EIO in the reply, never data; bodies damaged on the way are fetched again", async () => {
    const dir = scratch("nbd-eio");
    const peer = embeddedPeer(server);
    const bucket = await freshBucket(peer, "nbdeio");
    // Eight tries within the budget: at a 30% rate of damaged bodies, one of 16 blocks fails them all once in 1,000 runs.
    const args = [...peerArgs(peer), "--size=4M", "--blockSize=64k", "--blockCacheSize=0", "--maxRetryPause=5000", "--initialRetryPause=20"];
    const disk = await serveNbd(args, { dir, source: bucket });
    try {
      await ok(["qemu-io", "-f", "raw", "-c", "write -P 0x3c 0 1M", "-c", "flush", disk.qemu]);
      server.setFaults({ corruptRate: 0.3, keyPattern: /^[0-9a-f]{8}$/ });
      await ok(["qemu-io", "-f", "raw", "-c", "read -P 0x3c 0 1M", disk.qemu]); // retried until whole
      expect(server.counters.corruptedBodies).toBeGreaterThan(0);
      server.setFaults({ errorRate: 1, keyPattern: /^[0-9a-f]{8}$/ });
      const failed = await runAsync(["qemu-io", "-f", "raw", "-c", "read -P 0x3c 0 64k", disk.qemu]);
      expect(`${failed.stdout}${failed.stderr}`).toContain("Input/output error");
    } finally {
      server.setFaults({ errorRate: 0, corruptRate: 0, keyPattern: undefined });
    }
    await disk.stop();
  });
});

describe("NBD: unprivileged, without /dev/fuse", () => {
  test("served as nobody from a chroot holding the binary, its libraries and /proc", async () => {
    const root = scratch("nbd-chroot");
    chmodSync(root, 0o755);
    for (const lib of (await ok(["ldd", BINARY])).match(/\/lib[^\s]*/g) ?? []) {
      mkdirSync(join(root, lib, ".."), { recursive: true });
      copyFileSync(lib, join(root, lib));
    }
    copyFileSync(BINARY, join(root, "s3backer"));
    for (const d of ["data", "run", "proc", "tmp"]) mkdirSync(join(root, d));
    chmodSync(join(root, "tmp"), 0o1777);
    await ok(["chown", "nobody", join(root, "data"), join(root, "run")]);
    expect(existsSync(join(root, "dev/fuse"))).toBe(false);
    await ok(["mount", "-t", "proc", "proc", join(root, "proc")]);
    try {
      const proc = Bun.spawn(["chroot", "--userspec=nobody:nogroup", root, "/s3backer", "--test", "--nbd", "--size=16M", "-f", "/data", "unix:/run/socket"], {
        stdout: "ignore", stderr: "pipe",
      });
      try {
        // Listening, not only bound: the socket's file appears at bind(), before listen().
        await waitFor("the socket", async () => proc.exitCode !== null || (existsSync(join(root, "run/socket")) && (await accepts(join(root, "run/socket")))));
        if (proc.exitCode !== null) throw new Error(`exited ${proc.exitCode}: ${await new Response(proc.stderr).text()}`);
        await ok(["qemu-io", "-f", "raw", "-c", "write -P 0x61 4096 65536", "-c", "read -P 0x61 4096 65536", `nbd:unix:${join(root, "run/socket")}`]);
      } finally {
        proc.kill("SIGTERM");
        expect(await proc.exited).toBe(0);
      }
      // Flushed at SIGTERM, by nobody.
      const nobody = Number((await ok(["id", "-u", "nobody"])).trim());
      const stored = blockFiles(join(root, "data"));
      expect(stored.length).toBe(16); // 64 KiB from 4096: blocks 1-16 of 4 KiB
      for (const name of stored) expect(statSync(join(root, "data", name)).uid).toBe(nobody);
    } finally {
      await runAsync(["umount", join(root, "proc")]);
    }
  });
});

describe("NBD: command line", () => {
  test("a /dev/nbdX the kernel lacks, nbdkit flags, and a bad target each get one clear line", async () => {
    const dev = await runAsync([BINARY, "--test", "--nbd", "--size=1M", "-f", scratch("nbd-cli"), "/dev/nbd15"]);
    expect(dev.code).toBe(1);
    expect(dev.stderr).toBe("s3backer: /dev/nbd15 does not exist: this kernel has no NBD driver loaded ('modprobe nbd'), or serve on unix:PATH or tcp:HOST:PORT instead\n");
    const flag = await runAsync([BINARY, "--test", "--nbd", "--nbd-flag=--filter=exitlast", "--size=1M", "x", "unix:/tmp/x"]);
    expect(flag.stderr).toBe("s3backer: --nbd-flag=--filter=exitlast: passes options to nbdkit, which s3backer does not use: its NBD server is built in\n");
    const param = await runAsync([BINARY, "--test", "--nbd", "--nbd-param=foo=bar", "--size=1M", "x", "unix:/tmp/x"]);
    expect(param.stderr).toBe("s3backer: --nbd-param=foo=bar: passes options to nbdkit, which s3backer does not use: its NBD server is built in\n");
    const bad = await runAsync([BINARY, "--test", "--nbd", "--size=1M", "x", "nbd0"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--nbd: 'nbd0' is not unix:PATH, tcp:HOST:PORT or /dev/nbdX");
  });

  test("-o nbd and tcp:HOST:PORT serve, and --statsFileMirror holds the counters (deleting it resets them)", async () => {
    const dir = scratch("nbd-tcp");
    const stats = join(dir, "stats");
    const proc = Bun.spawn([BINARY, "--test", "-o", "nbd,size=4M,blockSize=64k", "-f", `--statsFileMirror=${stats}`, "--statsFileMirrorInterval=100", dir, "tcp:127.0.0.1:0"], {
      stdout: "ignore", stderr: "pipe",
    });
    try {
      let log = "";
      const reader = proc.stderr.getReader();
      while (!/serving NBD on tcp:127\.0\.0\.1:\d+/.test(log)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`exited: ${log}`);
        log += new TextDecoder().decode(value);
      }
      const port = /tcp:127\.0\.0\.1:(\d+)/.exec(log)![1];
      await ok(["qemu-io", "-f", "raw", "-c", "write -P 1 0 64k", "-c", "flush", `nbd:127.0.0.1:${port}`]);
      await waitFor("the stats mirror", () => existsSync(stats) && /writes\s+[1-9]/.test(readFileSync(stats, "utf8")));
      rmSync(stats);
      await waitFor("the counters reset", () => existsSync(stats) && /writes\s+0\b/.test(readFileSync(stats, "utf8")));
    } finally {
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
    }
  });
});

function writePattern(dir: string, seed: number, length: number): string {
  const path = join(dir, `pattern-${seed}`);
  writeFileSync(path, pattern(length, seed));
  return path;
}

/** The NBD export as a plain file, through qemu-storage-daemon's FUSE export, for `body`. */
async function withFuseExport(socket: string, file: string, body: () => Promise<void>): Promise<void> {
  writeFileSync(file, "");
  const qsd = Bun.spawn([
    "qemu-storage-daemon",
    "--blockdev", `driver=nbd,node-name=disk,server.type=unix,server.path=${socket}`,
    "--export", `type=fuse,id=export,node-name=disk,mountpoint=${file},writable=on`,
  ], { stdout: "ignore", stderr: "pipe" });
  try {
    await waitFor("the FUSE export", () => statSync(file).size > 0 || qsd.exitCode !== null);
    if (qsd.exitCode !== null) throw new Error(`qemu-storage-daemon: ${await new Response(qsd.stderr).text()}`);
    await body();
  } finally {
    qsd.kill("SIGTERM");
    await qsd.exited;
    await runAsync(["umount", "-l", file]);
  }
}
