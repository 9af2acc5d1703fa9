/**
 * Stream servers on node:net (Deno): its write keeps a copy of what the socket does not take at once.
 *
 * STARTTLS with X.509 hands the accepted socket to a tls.Server as if it had just connected
 * (node documents that a server's "connection" event takes any duplex stream): the server then
 * checks client certificates itself, which Deno's hand-made server-side TLSSocket does not (it
 * lets a certificate from any CA through). It gets the socket through a duplex of our own that
 * stops reading while the connection is paused: Deno's TLS socket, paused, reads on regardless
 * (test/component/tls-stream-contract.test.ts). PSK goes through psk-tls.ts.
 */
import { createServer, type Socket } from "node:net";
import { Duplex } from "node:stream";
import * as tls from "node:tls";
import { PskTlsSession } from "./psk-tls.ts";
import type { AcceptedConnection, StreamAddress, StreamListener, StreamSession, TlsServerCreds, TlsSessionInfo } from "./runtime.ts";

/** The socket that carries the conversation: the accepted one, or the TLS one made from it. */
type Carrier = Socket | tls.TLSSocket;

export function listenStream(address: StreamAddress, open: (c: AcceptedConnection) => StreamSession): Promise<StreamListener> {
  const server = createServer({ noDelay: true }, (raw: Socket) => {
    let carrier: Carrier = raw;
    let psk: PskTlsSession | undefined;
    let paused = false;
    let waiters: (() => void)[] = [];
    const wake = () => {
      const waiting = waiters;
      waiters = [];
      for (const w of waiting) w();
    };
    let closed = false;
    const gone = (why: string) => {
      wake();
      if (closed) return;
      closed = true;
      session.closed(why);
    };
    const listen = (s: Carrier, data: (chunk: Uint8Array) => void) => {
      s.on("data", data);
      s.on("drain", wake);
      s.on("end", () => gone("the client closed the connection"));
      s.on("close", () => gone("connection closed"));
      s.on("error", (err: Error) => gone(err.message));
    };
    // Listening first: a session that starts TLS at once takes the socket's listeners over.
    listen(raw, (chunk) => session.data(chunk));
    const session: StreamSession = open({
      peer: raw.remoteAddress ? `${raw.remoteAddress}:${raw.remotePort}` : "unix client",
      write: (bytes) => (psk ? psk.write(bytes) : carrier.write(bytes)),
      drained: () => (carrier.writableNeedDrain && !carrier.destroyed ? new Promise((resolve) => waiters.push(resolve)) : Promise.resolve()),
      end: () => (psk ? psk.end() : carrier.end()),
      abort: () => {
        carrier.destroy();
        raw.destroy();
      },
      pause: () => {
        paused = true;
        raw.pause();
        carrier.pause();
      },
      resume: () => {
        paused = false;
        raw.resume();
        carrier.resume();
      },
      startTls(creds, timeoutMs) {
        // From here the plain socket's bytes are TLS records, not the session's.
        for (const event of ["data", "drain", "end", "close", "error"]) raw.removeAllListeners(event);
        if (creds.kind === "psk") {
          psk = new PskTlsSession(creds.keys, timeoutMs, { send: (b) => raw.write(b), end: () => raw.end(), destroy: () => raw.destroy() }, (b) => session.data(b), gone);
          listen(raw, (chunk) => psk!.receive(chunk));
          raw.on("close", () => psk!.closed("the connection closed"));
          return psk.established;
        }
        return upgrade(raw, bridge(raw, () => paused), creds, timeoutMs).then(
          (t) => {
            carrier = t;
            listen(t, (chunk) => session.data(chunk));
            return describe(t);
          },
          (err: Error) => {
            gone(err.message);
            throw err;
          },
        );
      },
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    const listening = () => {
      const bound = server.address();
      resolve({ port: bound && typeof bound === "object" ? bound.port : undefined, close: () => server.close() });
    };
    if ("path" in address) server.listen(address.path, listening);
    else server.listen(address.port, address.host, listening);
  });
}

/** `raw` as a duplex that reads from it only while the connection is not paused. */
function bridge(raw: Socket, paused: () => boolean): Duplex {
  const duplex = new Duplex({
    read: () => void (paused() || raw.resume()),
    write: (chunk: Uint8Array, _encoding, done) => void raw.write(chunk, done),
    final: (done) => {
      raw.end();
      done();
    },
    destroy: (err, done) => {
      raw.destroy();
      done(err);
    },
  });
  raw.on("data", (chunk: Uint8Array) => duplex.push(chunk) || raw.pause());
  raw.on("end", () => duplex.push(null));
  raw.on("close", () => duplex.destroy());
  raw.on("error", (err: Error) => duplex.destroy(err));
  return duplex;
}

/** The TLS server side of `raw` (carried by `duplex`), once its handshake is done and the client authenticated. */
function upgrade(raw: Socket, duplex: Duplex, creds: Extract<TlsServerCreds, { kind: "x509" }>, timeoutMs: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const verify = creds.ca !== undefined;
    const server = tls.createServer({ cert: creds.cert, key: creds.key, ca: creds.ca, requestCert: verify, rejectUnauthorized: verify, handshakeTimeout: timeoutMs });
    const timer = setTimeout(() => fail(new Error(`not done within ${timeoutMs / 1000} s`)), timeoutMs);
    let settled = false;
    const fail = (err: Error) => {
      clearTimeout(timer);
      if (settled) return;
      settled = true;
      raw.destroy();
      reject(new Error(`TLS handshake failed: ${err.message}`));
    };
    server.once("secureConnection", (t: tls.TLSSocket) => {
      // rejectUnauthorized has refused a bad chain already; this only makes sure a certificate came.
      if (verify && !t.authorized && Object.keys(t.getPeerCertificate() ?? {}).length === 0) return fail(new Error("no client certificate"));
      clearTimeout(timer);
      settled = true;
      resolve(t);
    });
    server.once("tlsClientError", fail);
    raw.once("close", () => fail(new Error("the connection closed during the TLS handshake")));
    server.emit("connection", duplex);
  });
}

function describe(t: tls.TLSSocket): TlsSessionInfo {
  const cipher = t.getCipher();
  const subject = t.getPeerCertificate()?.subject;
  return { protocol: t.getProtocol() ?? "?", cipher: cipher?.standardName ?? cipher?.name ?? "?", peer: subject?.CN ? `CN=${subject.CN}` : undefined };
}
