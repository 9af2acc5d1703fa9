/**
 * What the program needs from its JavaScript runtime beyond the portable APIs. Bun and Deno
 * differ only behind this interface; `index.ts` picks the implementation.
 */

/** libc calls made through the runtime's FFI. Each throws an Error with `code` set to the errno name. */
export interface Libc {
  mount(source: string, target: string, fstype: string, flags: number, data: string): void;
  umount2(target: string, flags: number): void;
  /** A connected pair of Unix sockets: a byte stream, or (seqpacket) one message per read, as /dev/fuse gives. */
  socketpair(kind?: "stream" | "seqpacket"): [number, number];
  /** Receives one file descriptor sent with SCM_RIGHTS on a Unix socket (blocks). */
  receiveFd(socket: number): number;
  syslog(priority: number, message: string): void;
  /** Turns a terminal's echo off or on (for a password prompt). */
  setEcho(fd: number, on: boolean): void;
  /** ioctl(2) whose argument points to `arg`. */
  ioctl(fd: number, request: number, arg: Uint8Array): void;
  /** read(2) on a non-blocking descriptor: the length read, or -1 when nothing is waiting (EAGAIN). */
  tryRead(fd: number, buffer: Uint8Array): number;
  /**
   * ppoll(2) on one descriptor, the calling thread asleep meanwhile: true once it has something to
   * read, false when `microseconds` (under a second) passed first or a signal came.
   */
  waitReadable(fd: number, microseconds: number): boolean;
  /** posix_fadvise(POSIX_FADV_DONTNEED): the kernel may drop its cached pages of the range. */
  dropCachedPages(fd: number, offset: number, length: number): void;
  /** fallocate(2) punching a hole: the range reads as zeros and takes no disk space (the file keeps its size). */
  punchHole(fd: number, offset: number, length: number): void;
}

/** fallocate's FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE. */
export const PUNCH_HOLE_KEEP_SIZE = 0x01 | 0x02;

export const POSIX_FADV_DONTNEED = 4;

/** Room for a Linux struct termios, and tcsetattr's "apply now". */
export const TERMIOS_SIZE = 64;
export const TCSANOW = 0;

/** Sets or clears ECHO in the c_lflag field (offset 12) of a struct termios. */
export function setEchoBit(termios: Uint8Array, on: boolean): void {
  const ECHO = 0o10;
  const view = new DataView(termios.buffer, termios.byteOffset);
  const lflag = view.getUint32(12, true);
  view.setUint32(12, on ? lflag | ECHO : lflag & ~ECHO, true);
}

export interface HttpServer {
  readonly port: number;
  stop(): Promise<void>;
}

/** Where a stream server listens. */
export type StreamAddress = { path: string } | { host: string; port: number };

/** One accepted connection of a stream server. */
export interface StreamConnection {
  /** Who connected, for the log. */
  readonly peer: string;
  /**
   * Sends bytes. What the socket does not take at once is copied and sent later, so the caller's
   * bytes need not outlive the call. False when that queue is long: wait for `drained`.
   */
  write(bytes: Uint8Array): boolean;
  /** Resolves once the queue is empty (at once if it is), or the connection is gone. */
  drained(): Promise<void>;
  /** Sends what is queued, then closes. */
  end(): void;
  /** Closes at once: what is queued is dropped, never sent (a peer that reads nothing cannot hold the connection open). */
  abort(): void;
  /**
   * Stops reading from the socket: the kernel's buffer fills and the peer's sends block. A chunk
   * the runtime had already read may still be delivered after the call.
   */
  pause(): void;
  /** Reads from the socket again after `pause`. */
  resume(): void;
}

/** Credentials of a TLS server, read and checked at startup (src/config/nbd-tls.ts): X.509, or pre-shared keys. */
export type TlsServerCreds =
  | { kind: "x509"; cert: string; key: string; /** Given: clients must present a certificate this CA signed. */ ca: string | undefined }
  | { kind: "psk"; keys: ReadonlyMap<string, Uint8Array> };

/** What a TLS handshake settled, for the log. */
export interface TlsSessionInfo {
  protocol: string;
  cipher: string;
  /** Who the client proved to be: its certificate's subject, or its PSK identity. */
  peer: string | undefined;
}

/** A connection a stream server accepted. */
export interface AcceptedConnection extends StreamConnection {
  /**
   * Makes this connection the server side of a TLS session in place (STARTTLS). Call it in the
   * same turn as the write that tells the client to start TLS, with no plain bytes unread: the
   * next bytes are the client's handshake. From then on `write` encrypts, the session's `data`
   * gets decrypted bytes, and pause/resume hold back the encrypted stream. Resolves once the
   * client is authenticated; rejects, the connection closed, when the handshake fails or takes
   * longer than `timeoutMs`.
   */
  startTls(creds: TlsServerCreds, timeoutMs: number): Promise<TlsSessionInfo>;
}

/** A connection this process opened (connectStream), for requests whose bodies are not copied. */
export interface ClientConnection extends StreamConnection {
  /**
   * Sends bytes like `write`, but what the socket does not take at once is queued as it is, not
   * copied: the caller leaves the bytes unchanged until the queue is empty or the connection aborted.
   */
  writeBorrowed(bytes: Uint8Array): void;
  /** Bytes queued, not yet taken by the socket. */
  readonly queuedBytes: number;
  /**
   * Whether the peer closed the connection or sent bytes nobody asked for, while it was idle (for
   * connections not read while idle: plain sockets; the runtime's own report that as it happens).
   */
  closedByPeer?(): boolean;
}

/** What a stream server does with a connection: its bytes in order (each chunk is the handler's to keep), then its end. */
export interface StreamSession {
  data(chunk: Uint8Array): void;
  closed(why: string): void;
  /**
   * Where the next bytes may be received to directly (a response body of known length), so that they
   * are not copied from a chunk; `filled` then says how many came. Used only by plain sockets.
   */
  space?(): Uint8Array | undefined;
  filled?(length: number): void;
}

/**
 * Non-blocking TCP sockets through libc, for a thread that waits in poll(2) itself (the HTTP
 * threads on plain HTTP): bytes are received straight into the buffer they belong in. Each call
 * throws an Error with `code` set on a failure other than "not now".
 */
export interface PlainSockets {
  /** A socket connecting to an IPv4 or IPv6 address: its descriptor (wait until writable, then ask `connectError`). */
  connect(ip: string, port: number): number;
  /** The connection's error once it is writable: 0 when connected, else the errno. */
  connectError(fd: number): number;
  /** Bytes the socket took; 0 when it takes none now. */
  send(fd: number, bytes: Uint8Array): number;
  /** Bytes received into `into`; 0 at the end of the stream; -1 when none are waiting. */
  recv(fd: number, into: Uint8Array): number;
  close(fd: number): void;
  /**
   * poll(2): `fds` holds pairs (descriptor, events); the events that came are written back in the
   * high half of each second word (struct pollfd's revents). Returns how many descriptors have some.
   */
  poll(fds: Int32Array, count: number, timeoutMs: number): number;
  /** An eventfd another thread can `wake` the poller with (in its set, readable until `drain`ed). */
  eventFd(): number;
  wake(fd: number): void;
  drain(fd: number): void;
}

export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;

/** TLS for a client connection: verify the server's certificate (against `ca`, PEM, if given) for `serverName`. */
export interface ClientTls {
  verify: boolean;
  serverName: string;
  ca: string | undefined;
}

export interface StreamListener {
  /** The TCP port (the system's choice for port 0); undefined on a Unix socket. */
  readonly port: number | undefined;
  /** Stops accepting; open connections stay. */
  close(): void;
}

export interface Runtime {
  readonly name: string;
  readonly libc: Libc;
  /** Starts a worker from a module given by its path under src/ (e.g. "fuse/device-reader.worker.ts"). */
  startWorker(modulePath: string): Worker;
  /**
   * Extra fetch() options for S3 requests: bodies exactly as stored (never decompressed because of
   * their Content-Encoding: that is the codec's job), and TLS (skip verification, or a CA's PEM text).
   */
  fetchOptions(insecure: boolean, ca: string | undefined): Record<string, unknown>;
  /** Serves HTTP with a fetch-style handler. */
  serve(options: { port: number; hostname: string; tls?: { cert: string; key: string } }, handler: (req: Request) => Promise<Response>): HttpServer;
  /** Serves a Unix socket or a TCP port: `open` is called for each connection. Rejects when it cannot listen. */
  listenStream(address: StreamAddress, open: (connection: AcceptedConnection) => StreamSession): Promise<StreamListener>;
  /**
   * Opens a TCP connection (TLS when `tls` is given): `open` is called with it once connected.
   * Undefined where the runtime's sockets are not used for S3 (its fetch() is then).
   */
  connectStream?(host: string, port: number, tls: ClientTls | undefined, open: (connection: ClientConnection) => StreamSession): Promise<ClientConnection>;
  /** Sockets for threads that poll them themselves; undefined where the runtime's sockets are used instead. */
  plainSockets?: PlainSockets;
  /** A blocking read(2) (for the FUSE device, in reader threads); throws an Error with `code` set. */
  readSync(fd: number, buffer: Uint8Array): number;
  /** pread(2) off the main thread: the length read (short only at the end of the file). */
  readAt(fd: number, buffer: Uint8Array, position: number): Promise<number>;
  /** pwrite(2) of all of `buffer` off the main thread; the caller leaves the bytes alone until it settles. */
  writeAt(fd: number, buffer: Uint8Array, position: number): Promise<void>;
  /** CRC-32 (IEEE) of bytes, natively where the runtime has it. */
  crc32(data: Uint8Array): number;
  /** Runs a full garbage collection now; false where the runtime offers no way to (Deno). */
  collectGarbage(): boolean;
  /** The main thread's heap: bytes of JS objects, and bytes of buffers (ArrayBuffers) it holds. */
  heapBytes(): { objects: number; buffers: number };
  /** argv to start this same program again (for the background daemon). */
  selfCommand(): string[];
  /**
   * Environment settings of the runtime's memory allocator for a long-running mount, which the
   * allocator reads when the process starts (none where there are none to make).
   */
  readonly allocatorSettings: Readonly<Record<string, string>>;
  /**
   * Replaces this process with `command` and `env` (execve(2): same PID and descriptors). Returns
   * the error only if it could not; undefined where the runtime has no way to.
   */
  exec?(command: string[], env: Record<string, string>): Error;
}
