/**
 * The NBD front end: the disk served as a network block device, from this process, on a Unix
 * socket or a TCP port, or attached to a kernel /dev/nbdX through nbd-client.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NbdTarget } from "../config/settings.ts";
import { ConfigError } from "../errors.ts";
import { BackedFile } from "../file/backed-file.ts";
import { zeroExtents } from "../file/extents.ts";
import { log } from "../log.ts";
import type { NbdDevice } from "../nbd/device.ts";
import { describeAddress, NbdServer, type NbdAddress, type NbdTls } from "../nbd/server.ts";
import type { Disk } from "./open-disk.ts";
import { commandPath } from "../util/command-path.ts";
import { isLoopback } from "../util/loopback.ts";
import type { FrontEnd, FrontEndContext } from "./front-end.ts";

/** Blocks a CACHE request fetches at once. */
const PREFETCH_PARALLEL = 8;

/** The checks that can fail before the disk is opened. */
export function checkNbdTarget(target: NbdTarget): void {
  if (target.kind !== "device") return;
  if (!existsSync(target.path)) {
    throw new ConfigError(
      `${target.path} does not exist: this kernel has no NBD driver loaded ('modprobe nbd'), or serve on unix:PATH or tcp:HOST:PORT instead`,
    );
  }
  if (!commandPath("nbd-client")) throw new ConfigError(`attaching ${target.path} needs nbd-client (Debian package nbd-client)`);
}

export async function startNbd({ config, disk }: FrontEndContext): Promise<FrontEnd> {
  const target = config.nbd!;
  const device = diskDevice(disk, config.readOnly);
  // The size is asked at each connection: one after a resize sees the new one.
  const spec = {
    name: config.filename, description: `s3backer ${config.bucket}/${config.prefix}`, blockSize: device.blockSize, readOnly: config.readOnly,
    get size() {
      return device.size;
    },
  };
  // A kernel device is attached through a socket of our own.
  const socketDir = target.kind === "device" ? mkdtempSync(join(tmpdir(), "s3backer-nbd-")) : undefined;
  const address: NbdAddress = socketDir ? { kind: "unix", path: join(socketDir, "socket") } : (target as NbdAddress);
  const tls = config.nbdTls;
  if (address.kind === "tcp" && !isLoopback(address.host)) {
    const risk = tlsRisk(tls);
    if (risk) log.warn(`serving NBD on ${address.host}: ${risk}, so anyone who can reach that address can read and write the disk`);
  }
  const server = await NbdServer.listen(address, device, spec, log, tls);
  let endedOk!: (ok: boolean) => void;
  const ended = new Promise<boolean>((resolve) => (endedOk = resolve));
  let stopping = false;
  const finish = async () => {
    await server.stop();
    if (socketDir) rmSync(socketDir, { recursive: true, force: true });
    log.info(`NBD server stopped: flushing`);
    endedOk(true);
  };
  if (target.kind === "device" && socketDir) {
    const r = spawnSync("nbd-client", ["-unix", join(socketDir, "socket"), target.path, "-b", String(Math.min(4096, device.blockSize))], { encoding: "utf8" });
    if (r.status !== 0) {
      await server.stop();
      rmSync(socketDir!, { recursive: true, force: true });
      throw new ConfigError(`nbd-client ${target.path} failed: ${(r.stderr || `exit ${r.status}`).trim()}`);
    }
    // Like nbdkit's exitlast: once the kernel lets go (nbd-client -d), the server's work is done.
    server.onIdle = () => {
      if (!stopping) {
        stopping = true;
        log.info(`${target.path} was disconnected`);
        void finish();
      }
    };
  }
  return {
    ready: Promise.resolve(true),
    ended,
    readyMessage: () =>
      `serving NBD on ${target.kind === "device" ? `${target.path} (via ${describeAddress(server.address)})` : describeAddress(server.address)}: ` +
      `${disk.geometry.numBlocks} blocks of ${disk.geometry.blockSize} bytes` +
      (tls ? `, TLS ${tls.required ? "required" : "offered"} (${tlsKind(tls)})` : ""),
    stop(signal) {
      if (stopping) return;
      stopping = true;
      log.info(`${signal}: stopping the NBD server`);
      if (target.kind === "device") spawnSync("nbd-client", ["-d", target.path], { encoding: "utf8" });
      void finish();
    },
  };
}

/** The disk as the NBD server sees it: the file layer, with flushes and what is known to be zero. */
function diskDevice(disk: Disk, readOnly: boolean): NbdDevice {
  const file = new BackedFile(disk.store, disk.blockCache);
  const { blockSize } = disk.geometry;
  return {
    get size() {
      return file.size;
    },
    blockSize,
    readOnly,
    read: (offset, length) => file.read(offset, length),
    write: (offset, data) => file.write(offset, data),
    flush: () => disk.store.flush(),
    trim: (offset, length) => file.trim(offset, length),
    zero: (offset, length) => file.zeroRange(offset, length),
    prefetch: (offset, length) => file.prefetch(offset, length, PREFETCH_PARALLEL),
    extents: (offset, length, max) => zeroExtents(offset, length, file.size, blockSize, disk.knownZero, max),
  };
}

/** What lets anyone in, or undefined when TLS authenticates every client. */
function tlsRisk(tls: NbdTls | undefined): string | undefined {
  if (!tls) return "NBD without TLS has no authentication (see --nbd-tls-cert with --nbd-tls-ca, or --nbd-tls-psk)";
  if (!tls.required) return "--nbd-tls=on lets clients skip TLS (--nbd-tls=require refuses them)";
  if (tls.creds.kind === "x509" && !tls.creds.ca) return "TLS without --nbd-tls-ca does not authenticate clients";
  return undefined;
}

function tlsKind(tls: NbdTls): string {
  if (tls.creds.kind === "psk") return "pre-shared keys";
  return tls.creds.ca ? "X.509, client certificates required" : "X.509";
}
