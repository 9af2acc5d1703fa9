/**
 * Listens on a Unix socket or a TCP port and serves each connection with NbdConnection. Several
 * connections share the one device (its cache is shared, so FLUSH covers every connection's
 * writes: multi-conn).
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { lstatSync, rmSync } from "node:fs";
import { ConfigError, messageOf } from "../errors.ts";
import type { Logger } from "../log.ts";
import { NbdConnection, type Wire } from "./connection.ts";
import type { NbdDevice } from "./device.ts";
import type { ExportSpec } from "./handshake.ts";

export type NbdAddress = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number };

export function describeAddress(a: NbdAddress): string {
  return a.kind === "unix" ? `unix:${a.path}` : `tcp:${a.host.includes(":") ? `[${a.host}]` : a.host}:${a.port}`;
}

export class NbdServer {
  private readonly connections = new Set<NbdConnection>();
  private readonly running = new Set<Promise<void>>();
  /** Where it listens, with the port the system chose for port 0. */
  address: NbdAddress;
  /** Called whenever the last connection has closed. */
  onIdle: (() => void) | undefined;
  private constructor(
    private readonly server: Server,
    address: NbdAddress,
  ) {
    this.address = address;
  }

  static async listen(address: NbdAddress, device: NbdDevice, spec: ExportSpec, log: Logger): Promise<NbdServer> {
    if (address.kind === "unix") await clearStaleSocket(address.path);
    let nbd: NbdServer | undefined;
    const server = createServer({ noDelay: true }, (socket) => nbd?.accept(socket, device, spec, log));
    nbd = new NbdServer(server, address);
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err) => reject(new ConfigError(`cannot listen on ${describeAddress(address)}: ${messageOf(err)}`)));
      if (address.kind === "unix") server.listen(address.path, resolve);
      else server.listen(address.port, address.host, resolve);
    });
    server.on("error", (err) => log.error(`NBD server: ${messageOf(err)}`));
    const bound = server.address();
    if (address.kind === "tcp" && bound && typeof bound === "object") nbd.address = { ...address, port: bound.port };
    return nbd;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  private accept(socket: Socket, device: NbdDevice, spec: ExportSpec, log: Logger): void {
    const peer = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : "unix client";
    let drainWaiters: (() => void)[] = [];
    socket.on("drain", () => {
      const waiting = drainWaiters;
      drainWaiters = [];
      for (const w of waiting) w();
    });
    const wire: Wire = {
      write: (bytes) => socket.write(bytes),
      drained: () => (socket.writableNeedDrain ? new Promise((resolve) => drainWaiters.push(resolve)) : Promise.resolve()),
      close: () => socket.end(),
    };
    const connection = new NbdConnection(wire, device, spec, log, peer);
    socket.on("data", (chunk: Uint8Array) => connection.reader.push(chunk));
    const gone = (why: string) => {
      connection.lost(new Error(why));
      for (const w of drainWaiters) w();
      drainWaiters = [];
    };
    socket.on("end", () => gone("the client closed the connection"));
    socket.on("close", () => gone("connection closed"));
    socket.on("error", (err) => gone(messageOf(err)));
    this.connections.add(connection);
    log.debug(`NBD: connection from ${peer}`);
    const run = connection.run().finally(() => {
      this.connections.delete(connection);
      this.running.delete(run);
      log.debug(`NBD: ${peer} disconnected`);
      if (this.connections.size === 0) this.onIdle?.();
    });
    this.running.add(run);
  }

  /** Stops listening; requests in flight are answered, then every connection is closed. */
  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.connections) c.stop();
    await Promise.all([...this.running]);
    await closed;
    if (this.address.kind === "unix") rmSync(this.address.path, { force: true });
  }
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
