/**
 * TLS with pre-shared keys over an accepted plain connection, the same in both runtimes (their
 * own TLS takes no PSK): the socket's bytes go through the TypeScript engine (tls13/psk-server.ts)
 * and its output back to the socket. The handshake has a time limit; bytes sent before it ends
 * are refused by the engine, and a failed handshake sends the engine's alert, then closes.
 */
import type { TlsSessionInfo } from "./runtime.ts";
import { Tls13PskServer } from "./tls13/psk-server.ts";

/** The plain socket under the session. */
export interface PlainSide {
  /** Sends bytes as they are (the caller never reuses them); false when the queue is long. */
  send(bytes: Uint8Array): boolean;
  /** Closes once what is queued is sent. */
  end(): void;
  /** Closes at once. */
  destroy(): void;
}

export class PskTlsSession {
  readonly established: Promise<TlsSessionInfo>;
  private engine: Tls13PskServer;
  private over = false;
  /** What the last send said: false once the socket's queue is long. */
  private room = true;
  private readonly settle: { resolve: (info: TlsSessionInfo) => void; reject: (e: Error) => void };

  constructor(
    keys: ReadonlyMap<string, Uint8Array>,
    timeoutMs: number,
    private readonly plain: PlainSide,
    deliver: (plain: Uint8Array) => void,
    lost: (why: string) => void,
  ) {
    let settle!: { resolve: (info: TlsSessionInfo) => void; reject: (e: Error) => void };
    this.established = new Promise((resolve, reject) => (settle = { resolve, reject }));
    this.settle = settle;
    const timer = setTimeout(() => {
      if (this.engine.isOpen || this.over) return;
      this.over = true;
      settle.reject(new Error(`TLS handshake not done within ${timeoutMs / 1000} s`));
      plain.destroy();
      lost("TLS handshake timed out");
    }, timeoutMs);
    this.engine = new Tls13PskServer(keys, (bytes) => (this.room = plain.send(bytes)), {
      established: (session) => {
        clearTimeout(timer);
        settle.resolve({ protocol: "TLSv1.3", cipher: `TLS_AES_128_GCM_SHA256 (${session.keyExchange})`, peer: `PSK identity '${session.identity}'` });
      },
      data: deliver,
      closed: (why) => {
        clearTimeout(timer);
        if (this.over) return;
        this.over = true;
        settle.reject(new Error(`TLS handshake failed: ${why ?? "the client closed the session"}`));
        plain.end();
        lost(why === undefined ? "the client closed the TLS session" : `TLS: ${why}`);
      },
    });
  }

  /** The socket is gone: a handshake under way fails. */
  closed(why: string): void {
    if (this.over) return;
    this.over = true;
    this.settle.reject(new Error(`TLS handshake failed: ${why}`));
  }

  /** Bytes from the socket. */
  receive(bytes: Uint8Array): void {
    if (!this.over) this.engine.receive(bytes);
  }

  /** Application bytes to send; false when the socket's queue is long. */
  write(bytes: Uint8Array): boolean {
    if (this.over) return true;
    this.engine.writeData(bytes);
    return this.room;
  }

  /** Sends close_notify, then closes the socket once its queue is sent. */
  end(): void {
    if (!this.over) {
      if (!this.engine.isOpen) this.settle.reject(new Error("TLS handshake cut short: the server is closing the connection"));
      this.engine.close();
    }
    this.over = true;
    this.plain.end();
  }
}
