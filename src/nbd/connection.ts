/**
 * One client connection: the handshake, then requests served concurrently and answered as each
 * finishes (out of order, as the protocol allows). The bytes in and out go through a `Wire`, so
 * a test can drive a connection with no socket.
 */
import { Errno, FsError, messageOf } from "../errors.ts";
import type { Logger } from "../log.ts";
import { ByteReader } from "./byte-reader.ts";
import { InFlightBytes } from "./in-flight-bytes.ts";
import type { NbdDevice } from "./device.ts";
import {
  ALLOCATION_CONTEXT_ID, HANDSHAKE_TIMEOUT_MS, HangUp, MAX_REQUEST, minimumBlock, negotiate, type ExportSpec, type HandshakeTls, type Negotiated,
} from "./handshake.ts";
import {
  blockStatusChunk, Cmd, CmdFlag, dataChunk, doneChunk, decodeRequest, errorChunk, NbdErrno, REQUEST_SIZE, simpleReply, State, type Request,
} from "./protocol.ts";

export interface Wire {
  /** Queues bytes to send; false when the send buffer is full (wait for `drained`). */
  write(bytes: Uint8Array): boolean;
  /** Resolves once what was queued has gone to the socket (at once when nothing is), or the connection is gone. */
  drained(): Promise<void>;
  close(): void;
  /** Closes at once, dropping what is queued. */
  abort(): void;
  /** Stops taking bytes from the client, until `resume`. */
  pause(): void;
  resume(): void;
  /** TLS, when the server offers it. */
  tls?: HandshakeTls;
}

/** Requests served at once per connection; reading stops while this many are in flight. */
const MAX_IN_FLIGHT = 64;
/** Bytes of requests in flight over all of a server's connections (see InFlightBytes): one of the largest, or many smaller. */
export const IN_FLIGHT_BYTES = MAX_REQUEST;
/** Bytes read ahead of the request being parsed; past this the socket is paused. */
const READ_AHEAD = 2 << 20;
/** BLOCK_STATUS answers with at most this many extents (the client asks again from where it ends). */
const MAX_EXTENTS = 1024;

const COMMAND_NAMES = ["read", "write", "disc", "flush", "trim", "cache", "write zeroes", "block status"];

class Refused extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

export class NbdConnection {
  readonly reader: ByteReader;
  private inFlight = 0;
  private slotFreed: (() => void) | undefined;
  private allDone: (() => void) | undefined;
  private stopping = false;
  private closed = false;
  /** Still in the handshake: a stop closes the connection rather than wait for a client. */
  private negotiating = true;
  /** The last reply did not fit the socket's send buffer: read no more requests until it drains. */
  private backlogged = false;

  constructor(
    private readonly wire: Wire,
    private readonly device: NbdDevice,
    private readonly spec: ExportSpec,
    private readonly log: Logger,
    private readonly peer: string,
    private readonly inFlightBytes = new InFlightBytes(IN_FLIGHT_BYTES),
    private readonly handshakeMs = HANDSHAKE_TIMEOUT_MS,
  ) {
    this.reader = new ByteReader({ limit: READ_AHEAD, pause: () => wire.pause(), resume: () => wire.resume() });
  }

  /** Serves until the client leaves or `stop` has drained the requests in flight; never rejects. */
  async run(): Promise<void> {
    const limit = setTimeout(() => this.hangUp(new HangUp(`no export chosen within ${this.handshakeMs / 1000} s`)), this.handshakeMs);
    try {
      const sink = { send: (b: Uint8Array) => void this.wire.write(b), drained: () => this.wire.drained() };
      const negotiated = await negotiate(this.reader, sink, this.spec, this.tls()).finally(() => clearTimeout(limit));
      this.negotiating = false;
      if (negotiated) {
        this.log.debug(`NBD ${this.peer}: transmission (${negotiated.structured ? "structured" : "simple"} replies)`);
        await this.serve(negotiated);
      }
    } catch (err) {
      if (err instanceof HangUp) this.hangUp(err);
      else if (!this.closed && !this.stopping) this.log.debug(`NBD ${this.peer}: ${messageOf(err)}`);
    }
    await this.drain();
    this.close();
  }

  /** The wire's TLS, with the outcome of each handshake in the log. */
  private tls(): HandshakeTls | undefined {
    const tls = this.wire.tls;
    if (!tls) return undefined;
    return {
      required: tls.required,
      start: () =>
        tls.start().then(
          (info) => {
            this.log.debug(`NBD ${this.peer}: ${info.protocol} ${info.cipher}${info.peer ? `, client ${info.peer}` : ""}`);
            return info;
          },
          (err: unknown) => {
            this.log.info(`NBD ${this.peer}: refused: ${messageOf(err)}`);
            throw err;
          },
        ),
    };
  }

  /** The socket is gone: nothing more will be read, and replies go nowhere. */
  lost(reason: Error): void {
    this.closed = true;
    this.reader.end(reason);
  }

  /** Server shutdown: requests in flight finish and are answered, later ones get ESHUTDOWN. */
  stop(): void {
    this.stopping = true;
    this.reader.end(new Error("server shutting down"));
    // A TLS handshake under way, or replies the client has not read, would wait for the client.
    if (this.negotiating) this.abort();
  }

  /** Ends a client that broke a limit: one line, and the socket closed without waiting for it to read. */
  private hangUp(why: HangUp): void {
    if (this.closed) return;
    this.log.warn(`NBD ${this.peer}: ${why.message}: hanging up`);
    this.reader.end(why, true);
    this.abort();
  }

  private abort(): void {
    if (!this.closed) this.wire.abort();
    this.closed = true;
  }

  private close(): void {
    if (!this.closed) this.wire.close();
    this.closed = true;
  }

  private async serve(n: Negotiated): Promise<void> {
    for (;;) {
      const header = this.reader.takeNow(REQUEST_SIZE) ?? (await this.reader.take(REQUEST_SIZE));
      const request = decodeRequest(header);
      if (!request) {
        this.log.warn(`NBD ${this.peer}: a request without the request magic: closing the connection`);
        return;
      }
      let payload: Uint8Array | undefined;
      if (request.type === Cmd.WRITE && request.length > MAX_REQUEST) {
        await this.reader.skip(request.length);
        this.answer(request, n, Promise.reject(new Refused(NbdErrno.EINVAL, `a write of ${request.length} bytes is over the ${MAX_REQUEST}-byte limit`)), 0);
        continue;
      }
      // A write's payload is read, and a read's reply made, only once their bytes fit the bound.
      const bytes = (request.type === Cmd.WRITE || request.type === Cmd.READ) && request.length <= MAX_REQUEST ? request.length : 0;
      const room = bytes > 0 ? this.inFlightBytes.acquire(bytes) : undefined;
      if (room) await room;
      let kept: Uint8Array | undefined;
      if (request.type === Cmd.WRITE) {
        const alloc = (length: number) => (kept = this.inFlightBytes.buffer(length));
        try {
          payload = this.reader.takeNow(request.length, alloc) ?? (await this.reader.take(request.length, alloc));
        } catch (err) {
          this.inFlightBytes.release(bytes);
          throw err;
        }
      }
      if (request.type === Cmd.DISC) return;
      const work = this.stopping ? Promise.reject(new Refused(NbdErrno.ESHUTDOWN, "shutting down")) : this.execute(request, n, payload);
      // The payload is only lent to the write: once it settles, its memory takes the next one.
      this.answer(request, n, kept ? work.finally(() => this.inFlightBytes.giveBack(kept!)) : work, bytes);
      if (this.inFlight >= MAX_IN_FLIGHT) await new Promise<void>((resolve) => (this.slotFreed = resolve));
      if (this.backlogged) {
        await this.wire.drained();
        this.backlogged = false;
      }
    }
  }

  private drain(): Promise<void> {
    return this.inFlight === 0 ? Promise.resolve() : new Promise((resolve) => (this.allDone = resolve));
  }

  /** Runs one request: resolves with the read's bytes, or nothing; rejects with why it failed. */
  private execute(r: Request, n: Negotiated, payload: Uint8Array | undefined): Promise<Uint8Array[] | void> {
    try {
      this.check(r, n);
    } catch (err) {
      return Promise.reject(err);
    }
    const d = this.device;
    const fua = (r.flags & CmdFlag.FUA) !== 0;
    const durable = (done: Promise<unknown>) => (fua ? done.then(() => d.flush()) : done.then(() => {}));
    switch (r.type) {
      case Cmd.READ:
        return r.length === 0 ? Promise.resolve([]) : d.read(r.offset, r.length);
      case Cmd.WRITE:
        return durable(d.write(r.offset, payload!));
      case Cmd.FLUSH:
        return d.flush();
      case Cmd.TRIM:
        return durable(d.trim(r.offset, r.length));
      case Cmd.WRITE_ZEROES:
        return durable(d.zero(r.offset, r.length));
      case Cmd.CACHE:
        return d.prefetch(r.offset, r.length);
      case Cmd.BLOCK_STATUS:
        return Promise.resolve();
    }
    return Promise.reject(new Refused(NbdErrno.EINVAL, `unknown command ${r.type}`));
  }

  /** Refuses a request the export cannot take, with the protocol's error. */
  private check(r: Request, n: Negotiated): void {
    const writes = r.type === Cmd.WRITE || r.type === Cmd.TRIM || r.type === Cmd.WRITE_ZEROES;
    if (writes && this.device.readOnly) throw new Refused(NbdErrno.EPERM, "the export is read-only");
    if (r.type === Cmd.FLUSH || r.type > Cmd.BLOCK_STATUS) return;
    if (r.offset + r.length > this.device.size) {
      throw new Refused(writes ? NbdErrno.ENOSPC : NbdErrno.EINVAL, `${r.offset}+${r.length} is past the end of the ${this.device.size}-byte export`);
    }
    if ((r.type === Cmd.READ || r.type === Cmd.WRITE) && r.length > MAX_REQUEST) {
      throw new Refused(NbdErrno.EINVAL, `${r.length} bytes is over the ${MAX_REQUEST}-byte limit`);
    }
    const min = minimumBlock(this.spec);
    if (n.strictAlignment && (r.offset % min !== 0 || r.length % min !== 0)) {
      throw new Refused(NbdErrno.EINVAL, `${r.offset}+${r.length} is not aligned to ${min} bytes`);
    }
    if (r.type === Cmd.BLOCK_STATUS) {
      if (!n.allocation) throw new Refused(NbdErrno.EINVAL, "no metadata context was selected");
      if (r.length === 0) throw new Refused(NbdErrno.EINVAL, "block status of no bytes");
    }
    if (r.type === Cmd.READ && r.flags & CmdFlag.DF && !n.structured) throw new Refused(NbdErrno.EINVAL, "DF without structured replies");
  }

  /** Sends the reply once `work` settles, in the turn it settles (read bytes are good for that turn). */
  private answer(r: Request, n: Negotiated, work: Promise<Uint8Array[] | void>, bytes: number): void {
    this.inFlight++;
    work
      .then(
        (pieces) => this.reply(r, n, pieces ?? undefined),
        (err) => this.replyError(r, n, err),
      )
      .finally(() => this.finished(bytes));
  }

  private finished(bytes: number): void {
    if (bytes > 0) this.inFlightBytes.release(bytes);
    this.inFlight--;
    const freed = this.slotFreed;
    this.slotFreed = undefined;
    freed?.();
    if (this.inFlight === 0) {
      const done = this.allDone;
      this.allDone = undefined;
      done?.();
    }
  }

  private reply(r: Request, n: Negotiated, pieces: Uint8Array[] | undefined): void {
    if (this.closed) return;
    if (r.type === Cmd.BLOCK_STATUS) {
      const max = r.flags & CmdFlag.REQ_ONE ? 1 : MAX_EXTENTS;
      const extents = this.device.extents(r.offset, r.length, max).map((e) => ({ length: e.length, flags: e.zero ? State.HOLE | State.ZERO : 0 }));
      this.send(blockStatusChunk(r.cookie, ALLOCATION_CONTEXT_ID, extents));
      return;
    }
    if (r.type !== Cmd.READ) {
      this.send(simpleReply(r.cookie, 0));
      return;
    }
    // The header, then the store's bytes as they are: the runtime copies what the socket does not
    // take at once (test/unit/runtime-contract.test.ts checks it), so they need not outlive this
    // turn.
    const length = pieces?.reduce((n, p) => n + p.length, 0) ?? 0;
    if (!n.structured) this.send(simpleReply(r.cookie, 0));
    else if (length === 0) this.send(doneChunk(r.cookie)); // a data chunk holds at least one byte
    else this.send(dataChunk(r.cookie, r.offset, length));
    for (const piece of pieces ?? []) this.send(piece);
  }

  private replyError(r: Request, n: Negotiated, err: unknown): void {
    const errno = nbdErrno(err);
    const name = COMMAND_NAMES[r.type] ?? `command ${r.type}`;
    const message = `${name} ${r.offset}+${r.length}: ${messageOf(err)}`;
    if (err instanceof Refused) this.log.debug(`NBD ${this.peer}: refused ${message}`);
    else this.log.error(`NBD ${this.peer}: ${message}`);
    if (this.closed) return;
    this.send(n.structured ? errorChunk(r.cookie, errno, message) : simpleReply(r.cookie, errno));
  }

  private send(bytes: Uint8Array): void {
    if (!this.wire.write(bytes)) this.backlogged = true;
  }
}

/** The NBD error for a failure: the protocol has a short list, and EIO stands for the rest. */
function nbdErrno(err: unknown): number {
  if (err instanceof Refused) return err.errno;
  if (!(err instanceof FsError)) return NbdErrno.EIO;
  switch (err.errno) {
    case Errno.EPERM:
    case Errno.EROFS:
    case Errno.EACCES:
      return NbdErrno.EPERM;
    case Errno.ENOSPC:
    case Errno.EFBIG:
      return NbdErrno.ENOSPC;
    case Errno.EINVAL:
      return NbdErrno.EINVAL;
    case Errno.ENOMEM:
      return NbdErrno.ENOMEM;
    case Errno.EOPNOTSUPP:
      return NbdErrno.ENOTSUP;
    default:
      return NbdErrno.EIO;
  }
}
