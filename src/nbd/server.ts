/**
 * Listens on a Unix socket or a TCP port and serves each connection with NbdConnection. Several
 * connections share the one device (its cache is shared, so FLUSH covers every connection's
 * writes: multi-conn).
 */
import { createConnection } from "node:net";
import { lstatSync, rmSync } from "node:fs";
import { ConfigError } from "../errors.ts";
import { reasonOf } from "../util/flag-paths.ts";
import type { Logger } from "../log.ts";
import { IN_FLIGHT_BYTES, NbdConnection, type Wire } from "./connection.ts";
import { InFlightBytes } from "./in-flight-bytes.ts";
import type { NbdDevice } from "./device.ts";
import { HANDSHAKE_TIMEOUT_MS, type ExportSpec } from "./handshake.ts";
import { runtime } from "../runtime/index.ts";
import type { AcceptedConnection, StreamListener, StreamSession, TlsServerCreds } from "../runtime/runtime.ts";

export type NbdAddress = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number };

/** TLS for every connection: offered, or required (FORCEDTLS), with these credentials. */
export interface NbdTls {
  required: boolean;
  creds: TlsServerCreds;
}

export function describeAddress(a: NbdAddress): string {
  return a.kind === "unix" ? `unix:${a.path}` : `tcp:${a.host.includes(":") ? `[${a.host}]` : a.host}:${a.port}`;
}

export class NbdServer {
  private readonly connections = new Set<NbdConnection>();
  private readonly running = new Set<Promise<void>>();
  /** Shared by every connection: together they hold at most this many bytes of requests. */
  private readonly inFlightBytes = new InFlightBytes(IN_FLIGHT_BYTES);
  /** Called whenever the last connection has closed. */
  onIdle: (() => void) | undefined;
  private constructor(
    private readonly listener: StreamListener,
    /** Where it listens, with the port the system chose for port 0. */
    readonly address: NbdAddress,
  ) {}

  static async listen(
    address: NbdAddress,
    device: NbdDevice,
    spec: ExportSpec,
    log: Logger,
    tls?: NbdTls,
    handshakeTimeoutMs = HANDSHAKE_TIMEOUT_MS,
  ): Promise<NbdServer> {
    if (address.kind === "unix") await clearStaleSocket(address.path);
    let nbd: NbdServer | undefined;
    const where = address.kind === "unix" ? { path: address.path } : { host: address.host, port: address.port };
    const listener = await runtime
      .listenStream(where, (c) => nbd!.accept(c, device, spec, log, tls, handshakeTimeoutMs))
      .catch((err) => {
        throw new ConfigError(`cannot listen on ${describeAddress(address)}: ${listenFailure(err)}`);
      });
    nbd = new NbdServer(listener, address.kind === "tcp" ? { ...address, port: listener.port ?? address.port } : address);
    return nbd;
  }

  private accept(stream: AcceptedConnection, device: NbdDevice, spec: ExportSpec, log: Logger, tls: NbdTls | undefined, timeoutMs: number): StreamSession {
    const wire: Wire = {
      write: (b) => stream.write(b), drained: () => stream.drained(), close: () => stream.end(), abort: () => stream.abort(),
      pause: () => stream.pause(), resume: () => stream.resume(),
      tls: tls && { required: tls.required, start: () => stream.startTls(tls.creds, timeoutMs) },
    };
    const connection = new NbdConnection(wire, device, spec, log, stream.peer, this.inFlightBytes, timeoutMs);
    this.connections.add(connection);
    log.debug(`NBD: connection from ${stream.peer}`);
    const run = connection.run().finally(() => {
      this.connections.delete(connection);
      this.running.delete(run);
      log.debug(`NBD: ${stream.peer} disconnected`);
      if (this.connections.size === 0) this.onIdle?.();
    });
    this.running.add(run);
    return { data: (chunk) => connection.reader.push(chunk), closed: (why) => connection.lost(new Error(why)) };
  }

  /** Stops listening; requests in flight are answered, then every connection is closed. */
  async stop(): Promise<void> {
    this.listener.close();
    for (const c of this.connections) c.stop();
    await Promise.all([...this.running]);
    if (this.address.kind === "unix") rmSync(this.address.path, { force: true });
  }
}

/** Why listening failed, in the same words whichever runtime said it. */
function listenFailure(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === "EADDRINUSE") return "the address is in use (another server has that port)";
  if (code === "EADDRNOTAVAIL") return "no such address on this machine";
  if (code === "EACCES") return "permission denied (ports below 1024 need root)";
  return reasonOf(err);
}

/** A socket file left by a server that is gone is removed; one with a live server, or any other file, is refused. */
async function clearStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket) throw new ConfigError(`${path} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
  if (live) throw new ConfigError(`${path}: another server is listening there`);
  rmSync(path, { force: true });
}
