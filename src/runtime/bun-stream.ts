/**
 * Stream servers and clients on Bun's own sockets (Bun.listen, Bun.connect): a write goes straight
 * to the socket, and only what the socket does not take is copied and queued. (node:net under Bun
 * buffers and joins every large write: for NBD reads, a third of the process's CPU.)
 */
import type { Socket } from "bun";
import type { ClientConnection, ClientTls, StreamAddress, StreamConnection, StreamListener, StreamSession } from "./runtime.ts";

/** Queued bytes above which `write` says to wait. */
const HIGH_WATER = 4 << 20;

interface State {
  session: StreamSession;
  queue: Uint8Array[];
  queued: number;
  waiters: (() => void)[];
  gone: boolean;
}

function wake(s: State): void {
  const waiting = s.waiters;
  s.waiters = [];
  for (const w of waiting) w();
}

/** Writes what the socket takes now and queues the rest (a copy of it, unless `borrowed`); false once the queue is long. */
function send(socket: Socket<State>, s: State, bytes: Uint8Array, borrowed: boolean): boolean {
  if (s.gone) return true;
  let rest = bytes;
  if (s.queue.length === 0) {
    const n = socket.write(bytes);
    rest = n < 0 ? new Uint8Array(0) : bytes.subarray(n);
  }
  if (rest.length > 0) {
    s.queue.push(borrowed ? rest : rest.slice());
    s.queued += rest.length;
  }
  return s.queued < HIGH_WATER;
}

function connection(socket: Socket<State>, state: () => State): ClientConnection {
  return {
    peer: socket.remoteAddress || "unix client",
    write: (bytes) => send(socket, state(), bytes, false),
    writeBorrowed: (bytes) => void send(socket, state(), bytes, true),
    get queuedBytes() {
      return state().queued;
    },
    abort() {
      const s = state();
      s.queue = [];
      s.queued = 0;
      s.gone = true;
      socket.terminate();
      wake(s);
    },
    drained() {
      const s = state();
      return s.queued === 0 || s.gone ? Promise.resolve() : new Promise((resolve) => s.waiters.push(resolve));
    },
    end() {
      const s = state();
      if (s.queued === 0) socket.end();
      else s.waiters.push(() => socket.end());
    },
    pause: () => socket.pause(),
    resume: () => socket.resume(),
  };
}

function handlers(open: (c: ClientConnection) => StreamSession) {
  return {
    open(socket: Socket<State>) {
      const state: State = { session: undefined!, queue: [], queued: 0, waiters: [], gone: false };
      socket.data = state;
      state.session = open(connection(socket, () => state));
    },
    data(socket: Socket<State>, chunk: Uint8Array) {
      socket.data.session.data(chunk);
    },
    drain(socket: Socket<State>) {
      const s = socket.data;
      while (s.queue.length > 0) {
        const head = s.queue[0]!;
        const n = socket.write(head);
        if (n < 0) break;
        s.queued -= n;
        if (n < head.length) {
          s.queue[0] = head.subarray(n);
          return;
        }
        s.queue.shift();
      }
      wake(s);
    },
    close(socket: Socket<State>) {
      const s = socket.data;
      s.gone = true;
      wake(s);
      s.session.closed("connection closed");
    },
    error(socket: Socket<State>, err: Error) {
      socket.data.gone = true;
      socket.data.session.closed(err.message);
    },
  };
}

export async function listenStream(address: StreamAddress, open: (c: StreamConnection) => StreamSession): Promise<StreamListener> {
  const socket = handlers(open);
  if ("path" in address) {
    const unix = Bun.listen<State>({ unix: address.path, socket });
    return { port: undefined, close: () => unix.stop(false) };
  }
  const tcp = Bun.listen<State>({ hostname: address.host, port: address.port, socket });
  return { port: tcp.port, close: () => tcp.stop(false) };
}

/**
 * A TCP connection to `host:port` (TLS when `tls` is given), once it can carry bytes: for TLS, once
 * the handshake is done (bytes written before it are not sent). Rejects when it cannot connect.
 */
export function connectStream(host: string, port: number, tls: ClientTls | undefined, open: (c: ClientConnection) => StreamSession): Promise<ClientConnection> {
  return new Promise((resolve, reject) => {
    let connection: ClientConnection | undefined;
    const socket = handlers((c) => {
      connection = c;
      const session = open(c);
      return {
        data: (chunk) => session.data(chunk),
        closed: (why) => {
          reject(new Error(`connection to ${host}:${port} closed: ${why}`));
          session.closed(why);
        },
      };
    });
    Bun.connect<State>({
      hostname: host,
      port,
      ...(tls ? { tls: { rejectUnauthorized: tls.verify, serverName: tls.serverName, ...(tls.ca ? { ca: tls.ca } : {}) } } : {}),
      socket: {
        ...socket,
        open(s: Socket<State>) {
          socket.open(s);
          if (!tls) resolve(connection!);
        },
        handshake(_s: Socket<State>, ok: boolean, error: Error | null) {
          if (ok && (!tls!.verify || !error)) resolve(connection!);
          else reject(new Error(`TLS with ${host}:${port}: ${error?.message ?? "handshake failed"}`));
        },
        connectError(_s: Socket<State>, error: Error) {
          reject(error);
        },
      },
    }).catch(reject);
  });
}
