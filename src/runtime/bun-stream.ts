/**
 * Stream servers and clients on Bun's own sockets (Bun.listen, Bun.connect): a write goes straight
 * to the socket, and only what the socket does not take is copied and queued. (node:net under Bun
 * buffers and joins every large write: for NBD reads, a third of the process's CPU.)
 *
 * STARTTLS with X.509 upgrades the accepted socket in place with `upgradeTLS({ isServer: true })`,
 * which Bun's own node:tls uses for server-side TLSSockets but bun-types does not declare
 * (test/component/tls-stream-contract.test.ts pins it). The plain socket's handler still gets
 * events after that (the ciphertext, its close): they are ignored. PSK goes through psk-tls.ts.
 */
import type { Socket, TLSOptions } from "bun";
import { PskTlsSession } from "./psk-tls.ts";
import type {
  AcceptedConnection, ClientConnection, ClientTls, StreamAddress, StreamListener, StreamSession, TlsServerCreds, TlsSessionInfo,
} from "./runtime.ts";

/** Queued bytes above which `write` says to wait. */
const HIGH_WATER = 4 << 20;

interface State {
  session: StreamSession;
  /** The socket that carries the conversation: the accepted one, or the TLS one made from it. */
  socket: Socket<State>;
  queue: Uint8Array[];
  queued: number;
  waiters: (() => void)[];
  gone: boolean;
  /** Upgraded to TLS: the plain socket's events are not ours any more. */
  upgraded: boolean;
  psk: PskTlsSession | undefined;
  /** The TLS handshake under way. */
  handshake: { resolve: (info: TlsSessionInfo) => void; reject: (e: Error) => void; timer: ReturnType<typeof setTimeout>; verify: boolean } | undefined;
}

function wake(s: State): void {
  const waiting = s.waiters;
  s.waiters = [];
  for (const w of waiting) w();
}

/** Writes what the socket takes now and queues the rest (a copy of it, unless `borrowed`); false once the queue is long. */
function send(s: State, bytes: Uint8Array, borrowed: boolean): boolean {
  if (s.gone) return true;
  let rest = bytes;
  if (s.queue.length === 0) {
    const n = s.socket.write(bytes);
    rest = n < 0 ? new Uint8Array(0) : bytes.subarray(n);
  }
  if (rest.length > 0) {
    s.queue.push(borrowed ? rest : rest.slice());
    s.queued += rest.length;
  }
  return s.queued < HIGH_WATER;
}

/** Sends what the queue holds, as far as the socket takes it; wakes those waiting once it is empty. */
function flush(s: State): void {
  while (s.queue.length > 0) {
    const head = s.queue[0]!;
    const n = s.socket.write(head);
    if (n < 0) break;
    s.queued -= n;
    if (n < head.length) {
      s.queue[0] = head.subarray(n);
      return;
    }
    s.queue.shift();
  }
  wake(s);
}

function lost(s: State, why: string): void {
  s.psk?.closed(why);
  if (s.handshake) {
    clearTimeout(s.handshake.timer);
    s.handshake.reject(new Error(why));
    s.handshake = undefined;
  }
  if (s.gone) return;
  s.gone = true;
  wake(s);
  s.session.closed(why);
}

function connection(socket: Socket<State>, state: () => State): ClientConnection & AcceptedConnection {
  return {
    peer: socket.remoteAddress || "unix client",
    write: (bytes) => {
      const s = state();
      return s.psk ? s.psk.write(bytes) : send(s, bytes, false);
    },
    writeBorrowed: (bytes) => void send(state(), bytes, true),
    get queuedBytes() {
      return state().queued;
    },
    abort() {
      const s = state();
      s.queue = [];
      s.queued = 0;
      s.gone = true;
      s.socket.terminate();
      wake(s);
    },
    drained() {
      const s = state();
      return s.queued === 0 || s.gone ? Promise.resolve() : new Promise((resolve) => s.waiters.push(resolve));
    },
    end() {
      const s = state();
      if (s.psk) return s.psk.end();
      if (s.handshake) return s.socket.terminate(); // nothing of ours to send yet
      if (s.queued === 0) s.socket.end();
      else s.waiters.push(() => s.socket.end());
    },
    pause: () => void state().socket.pause(),
    resume: () => void state().socket.resume(),
    startTls: (creds, timeoutMs) => startTls(state(), creds, timeoutMs),
  };
}

function startTls(s: State, creds: TlsServerCreds, timeoutMs: number): Promise<TlsSessionInfo> {
  // A plain write still queued would go out after the TLS bytes.
  if (s.queued > 0) return Promise.reject(new Error("plain bytes still queued at STARTTLS"));
  if (creds.kind === "psk") {
    const raw = s.socket;
    s.psk = new PskTlsSession(creds.keys, timeoutMs, {
      send: (bytes) => send(s, bytes, true),
      end: () => (s.queued === 0 ? raw.end() : s.waiters.push(() => raw.end())),
      destroy: () => raw.terminate(),
    }, (plain) => s.session.data(plain), (why) => lost(s, why));
    return s.psk.established;
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      const why = `TLS handshake not done within ${timeoutMs / 1000} s`;
      s.handshake = undefined;
      reject(new Error(why));
      s.socket.terminate();
      lost(s, why);
    }, timeoutMs);
    s.handshake = { resolve, reject, timer, verify: creds.ca !== undefined };
    s.upgraded = true;
    const tls: TLSOptions & { requestCert?: boolean } = { cert: creds.cert, key: creds.key };
    if (creds.ca) Object.assign(tls, { ca: creds.ca, requestCert: true, rejectUnauthorized: true });
    const upgrade = s.socket.upgradeTLS as (o: unknown) => [Socket<State>, Socket<State>];
    const [, secure] = upgrade.call(s.socket, { data: s, isServer: true, tls, socket: TLS_HANDLERS });
    s.socket = secure;
  });
}

/** The TLS socket's handlers, once upgraded. */
const TLS_HANDLERS = {
  data(socket: Socket<State>, chunk: Uint8Array) {
    socket.data.session.data(chunk);
  },
  drain(socket: Socket<State>) {
    flush(socket.data);
  },
  handshake(socket: Socket<State>, ok: boolean, error: Error | null) {
    const s = socket.data;
    const h = s.handshake;
    if (!h) return;
    s.handshake = undefined;
    clearTimeout(h.timer);
    // With rejectUnauthorized Bun fails a handshake whose client certificate does not verify;
    // `error` is checked all the same. (Without a CA it names the missing client certificate.)
    if (!ok || (h.verify && error)) {
      h.reject(new Error(`TLS handshake failed: ${error?.message ?? "refused"}`));
      socket.terminate();
      return;
    }
    const cipher = socket.getCipher();
    const subject = socket.getPeerCertificate()?.subject;
    h.resolve({ protocol: socket.getTLSVersion(), cipher: cipher?.standardName ?? cipher?.name ?? "?", peer: subject?.CN ? `CN=${subject.CN}` : undefined });
  },
  close(socket: Socket<State>) {
    lost(socket.data, "connection closed");
  },
  error(socket: Socket<State>, err: Error) {
    lost(socket.data, err.message);
  },
};

function handlers(open: (c: ClientConnection & AcceptedConnection) => StreamSession) {
  return {
    open(socket: Socket<State>) {
      const state: State = { session: undefined!, socket, queue: [], queued: 0, waiters: [], gone: false, upgraded: false, psk: undefined, handshake: undefined };
      socket.data = state;
      state.session = open(connection(socket, () => state));
    },
    data(socket: Socket<State>, chunk: Uint8Array) {
      const s = socket.data;
      if (s.psk) s.psk.receive(chunk);
      else if (!s.upgraded) s.session.data(chunk);
    },
    drain(socket: Socket<State>) {
      if (!socket.data.upgraded) flush(socket.data);
    },
    close(socket: Socket<State>) {
      if (!socket.data.upgraded) lost(socket.data, "connection closed");
    },
    error(socket: Socket<State>, err: Error) {
      if (!socket.data.upgraded) lost(socket.data, err.message);
    },
  };
}

export async function listenStream(address: StreamAddress, open: (c: AcceptedConnection) => StreamSession): Promise<StreamListener> {
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
