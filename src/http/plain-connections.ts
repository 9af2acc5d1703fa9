/**
 * An HTTP thread's plain-HTTP connections on sockets it polls itself (runtime.plainSockets). A
 * response body is received straight into the buffer it belongs in: through the runtime's sockets
 * each socket read arrived as a chunk of its own, allocated and copied once more into the body, a
 * good part of the CPU a cold read costs.
 *
 * While requests are in flight the thread waits in poll(2), and its event loop turns only between
 * waits (at least every TURN_MS, for its timers; after every look when the event loop has work of
 * its own, such as hashing, which is then not held back by waits). Messages from the main thread
 * are not read while it polls: the main thread counts each job it posts (`signals`) and, if the
 * thread is polling, wakes it through an eventfd; the thread lets its event loop take the message
 * before it polls again.
 */
import { setImmediate } from "node:timers";
import { messageOf } from "../errors.ts";
import { errnoError } from "../runtime/errno-names.ts";
import { POLLERR, POLLHUP, POLLIN, POLLOUT, type ClientConnection, type PlainSockets, type StreamSession } from "../runtime/runtime.ts";

/** Words of the shared signals: jobs posted by the main thread, and 1 while the thread is in poll(2). */
const POSTED = 0;
const POLLING = 1;
/** Longest the thread polls before its event loop turns (timers: a request's time limit). */
const TURN_MS = 20;
/** What is received when no body waits for the bytes (heads, and bodies of unknown length), copied out. */
const SCRATCH_BYTES = 64 * 1024;
/** One pollfd, for a look at one idle connection. */
const onePollfd = new Int32Array(2);

/** The main thread's side: counts a job posted to a thread and wakes it if it is waiting in poll(2). */
export function jobPosted(sockets: PlainSockets, signals: Int32Array, wakeFd: number): void {
  Atomics.add(signals, POSTED, 1);
  if (Atomics.load(signals, POLLING) === 1) sockets.wake(wakeFd);
}

export class PlainLoop {
  readonly signals = new Int32Array(new SharedArrayBuffer(8));
  readonly wakeFd: number;
  private received = 0;
  private running = false;
  private readonly open = new Map<number, PlainConnection>();
  private pollfds = new Int32Array(32);
  private readonly scratch = new Uint8Array(SCRATCH_BYTES);
  private readonly nextTurn = () => this.turn();

  /**
   * `busy`: whether requests are in flight on these sockets (the thread polls only then);
   * `loopBusy`: whether the event loop has work meanwhile (then the thread looks without waiting).
   */
  constructor(
    private readonly s: PlainSockets,
    private readonly busy: () => boolean,
    private readonly loopBusy: () => boolean,
  ) {
    this.wakeFd = s.eventFd();
  }

  /** A job's message was taken. */
  jobTaken(): void {
    this.received = (this.received + 1) | 0; // wraps as the shared Int32 count does
  }

  /**
   * A connection to `ip:port`; bytes written before it is connected are sent once it is. A failure
   * to connect is the session's `closed`.
   */
  connect(ip: string, port: number, open: (c: ClientConnection) => StreamSession): ClientConnection {
    const fd = this.s.connect(ip, port);
    const conn = new PlainConnection(this, this.s, fd, `${ip}:${port}`);
    conn.session = open(conn);
    this.open.set(fd, conn);
    this.start();
    return conn;
  }

  /** Polls while requests are in flight. */
  start(): void {
    if (this.running) return;
    this.running = true;
    setImmediate(this.nextTurn);
  }

  forget(conn: PlainConnection): void {
    this.open.delete(conn.fd);
  }

  private turn(): void {
    const until = performance.now() + TURN_MS;
    try {
      for (;;) {
        if (!this.busy()) return void (this.running = false);
        if (Atomics.load(this.signals, POSTED) !== this.received || performance.now() >= until) return void setImmediate(this.nextTurn);
        const wait = this.loopBusy() ? 0 : TURN_MS;
        const count = this.fill();
        Atomics.store(this.signals, POLLING, 1);
        // A job posted after the look above wakes the poll; one posted before it is seen here.
        const n = Atomics.load(this.signals, POSTED) === this.received ? this.s.poll(this.pollfds, count, wait) : 0;
        Atomics.store(this.signals, POLLING, 0);
        if (n > 0) this.dispatch(count);
        if (wait === 0) return void setImmediate(this.nextTurn);
      }
    } catch (err) {
      // The thread fails (its requests with it: see http-threads.ts); the loop must not stay marked running.
      this.running = false;
      Atomics.store(this.signals, POLLING, 0);
      throw err;
    }
  }

  /** Closes every socket and the eventfd (the thread is ending). */
  closeAll(): void {
    for (const conn of [...this.open.values()]) conn.abort();
    this.s.close(this.wakeFd);
  }

  /** The poll set: the eventfd, then every connection. Returns how many. */
  private fill(): number {
    const count = 1 + this.open.size;
    if (this.pollfds.length < 2 * count) this.pollfds = new Int32Array(4 * count);
    const fds = this.pollfds;
    fds[0] = this.wakeFd;
    fds[1] = POLLIN;
    let i = 2;
    for (const conn of this.open.values()) {
      fds[i] = conn.fd;
      fds[i + 1] = conn.events();
      i += 2;
    }
    return count;
  }

  private dispatch(count: number): void {
    const fds = this.pollfds;
    if (fds[1]! >>> 16) this.s.drain(this.wakeFd);
    for (let i = 1; i < count; i++) {
      const revents = fds[2 * i + 1]! >>> 16;
      if (revents) this.open.get(fds[2 * i]!)?.ready(revents, this.scratch);
    }
  }
}

class PlainConnection implements ClientConnection {
  session: StreamSession | undefined;
  private connecting = true;
  private gone = false;
  private queue: Uint8Array[] = [];
  private queued = 0;
  private ending = false;
  private paused = false;
  private waiters: (() => void)[] = [];

  constructor(
    private readonly loop: PlainLoop,
    private readonly s: PlainSockets,
    readonly fd: number,
    readonly peer: string,
  ) {}

  events(): number {
    if (this.connecting) return POLLOUT;
    return (this.paused ? 0 : POLLIN) | (this.queued > 0 ? POLLOUT : 0);
  }

  write(bytes: Uint8Array): boolean {
    this.send(bytes, false);
    return true;
  }

  writeBorrowed(bytes: Uint8Array): void {
    this.send(bytes, true);
  }

  get queuedBytes(): number {
    return this.queued;
  }

  closedByPeer(): boolean {
    if (this.gone) return true;
    onePollfd[0] = this.fd;
    onePollfd[1] = POLLIN;
    return this.s.poll(onePollfd, 1, 0) > 0;
  }

  drained(): Promise<void> {
    return this.queued === 0 || this.gone ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }

  end(): void {
    if (this.queued === 0) this.close();
    else this.ending = true;
  }

  abort(): void {
    this.close();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }

  /** The socket has events (`revents` of poll): connected, bytes to take, room to send, or its end. */
  ready(revents: number, scratch: Uint8Array): void {
    if (this.connecting) {
      const error = this.s.connectError(this.fd);
      if (error !== 0) return this.lost(errnoError(`connect to ${this.peer}`, error).message);
      this.connecting = false;
      this.loop.start();
    }
    if (revents & POLLOUT) this.flush();
    if (revents & (POLLIN | POLLHUP | POLLERR)) this.receive(scratch);
  }

  private receive(scratch: Uint8Array): void {
    const session = this.session!;
    while (!this.gone) {
      const space = session.space?.();
      const into = space && space.length > 0 ? space : scratch;
      let n;
      try {
        n = this.s.recv(this.fd, into);
      } catch (err) {
        return this.lost(messageOf(err));
      }
      if (n < 0) return;
      if (n === 0) return this.lost("connection closed");
      if (into === scratch) session.data(scratch.slice(0, n));
      else session.filled!(n);
      // A short read took what the socket had: poll says when more comes (no read just to hear EAGAIN).
      if (n < into.length) return;
    }
  }

  private send(bytes: Uint8Array, borrowed: boolean): void {
    if (this.gone) return;
    let at = 0;
    if (!this.connecting && this.queued === 0) {
      try {
        at = this.s.send(this.fd, bytes);
      } catch (err) {
        // Told on a later turn: the writer is in the middle of starting its request.
        const why = messageOf(err);
        return void queueMicrotask(() => this.lost(why));
      }
    }
    if (at === bytes.length) return;
    const rest = bytes.subarray(at);
    this.queue.push(borrowed ? rest : rest.slice());
    this.queued += rest.length;
    this.loop.start();
  }

  private flush(): void {
    while (this.queue.length > 0 && !this.gone) {
      const head = this.queue[0]!;
      let n;
      try {
        n = this.s.send(this.fd, head);
      } catch (err) {
        return this.lost(messageOf(err));
      }
      this.queued -= n;
      if (n < head.length) {
        this.queue[0] = head.subarray(n);
        return;
      }
      this.queue.shift();
    }
    if (this.queued === 0) {
      for (const wake of this.waiters.splice(0)) wake();
      if (this.ending) this.close();
    }
  }

  /** Closes without telling the session (abort, or end once sent). */
  private close(): void {
    if (this.gone) return;
    this.gone = true;
    this.queue = [];
    this.queued = 0;
    this.loop.forget(this);
    this.s.close(this.fd);
    for (const wake of this.waiters.splice(0)) wake();
  }

  private lost(why: string): void {
    if (this.gone) return;
    this.close();
    this.session!.closed(why);
  }
}
