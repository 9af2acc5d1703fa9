/** The runtime adapter for Bun: libc through `bun:ffi`, workers from bundled modules. */
import { dlopen, FFIType, ptr, read } from "bun:ffi";
import { heapStats } from "bun:jsc";
import { readSync } from "node:fs";
import { POSIX_FADV_DONTNEED, PUNCH_HOLE_KEEP_SIZE, setEchoBit, TCSANOW, TERMIOS_SIZE, type Libc, type PlainSockets, type Runtime } from "./runtime.ts";
import { errnoError } from "./errno-names.ts";
import { AF_UNIX, EAGAIN, fdMessage, PollArgs, receivedFd, SOCK_SEQPACKET, SOCK_STREAM } from "./libc-layouts.ts";
import { connectStream, listenStream } from "./bun-stream.ts";
import { readAt, writeAt } from "./positioned-io.ts";
import { bunPlainSockets } from "./bun-plain-sockets.ts";


/** glibc's name first, then musl's (the musl build of the binary). */
const LIBC_NAMES = ["libc.so.6", `libc.musl-${process.arch === "arm64" ? "aarch64" : "x86_64"}.so.1`];

const libcName = LIBC_NAMES.find((n) => {
  try {
    dlopen(n, {}).close();
    return true;
  } catch {
    return false;
  }
}) ?? LIBC_NAMES[0]!;

function openLibc() {
  const { symbols } = dlopen(libcName, {
    mount: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
    umount2: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    socketpair: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    recvmsg: { args: [FFIType.i32, FFIType.ptr, FFIType.i32], returns: FFIType.i64 },
    __errno_location: { args: [], returns: FFIType.ptr },
    openlog: { args: [FFIType.ptr, FFIType.i32, FFIType.i32], returns: FFIType.void },
    syslog: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.void },
    tcgetattr: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    tcsetattr: { args: [FFIType.i32, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
    read: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64_fast },
    posix_fadvise: { args: [FFIType.i32, FFIType.i64_fast, FFIType.i64_fast, FFIType.i32], returns: FFIType.i32 },
    fallocate: { args: [FFIType.i32, FFIType.i32, FFIType.i64_fast, FFIType.i64_fast], returns: FFIType.i32 },
    execve: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    ppoll: { args: [FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  });
  return symbols;
}

const cstr = (s: string) => Buffer.from(`${s}\0`);

class BunLibc implements Libc {
  private readonly c = openLibc();
  // openlog keeps the pointer: the ident must live as long as the process.
  private readonly syslogIdent = cstr("s3backer");
  private readonly poll = new PollArgs();
  private syslogOpen = false;

  /** Reads errno right after a failed call, before any other JavaScript can change it. */
  private check(call: string, result: number | bigint): void {
    if (Number(result) >= 0) return;
    const errno = read.i32(this.c.__errno_location()!, 0);
    throw errnoError(call, errno);
  }

  mount(source: string, target: string, fstype: string, flags: number, data: string): void {
    this.check("mount", this.c.mount(cstr(source), cstr(target), cstr(fstype), flags, cstr(data)));
  }

  umount2(target: string, flags: number): void {
    this.check("umount2", this.c.umount2(cstr(target), flags));
  }

  socketpair(kind: "stream" | "seqpacket" = "stream"): [number, number] {
    const fds = new Int32Array(2);
    this.check("socketpair", this.c.socketpair(AF_UNIX, kind === "stream" ? SOCK_STREAM : SOCK_SEQPACKET, 0, fds));
    return [fds[0]!, fds[1]!];
  }

  receiveFd(socket: number): number {
    const { msg, control, keep } = fdMessage((bytes) => BigInt(ptr(bytes)));
    const got = this.c.recvmsg(socket, msg, 0);
    this.check("recvmsg", got);
    void keep; // the buffers it points to must live until recvmsg returns
    return receivedFd(control, Number(got));
  }

  syslog(priority: number, message: string): void {
    if (!this.syslogOpen) {
      const LOG_PID = 0x01;
      const LOG_DAEMON = 3 << 3;
      this.c.openlog(this.syslogIdent, LOG_PID, LOG_DAEMON);
      this.syslogOpen = true;
    }
    // A "%s" format keeps any % in the message from being read as a directive.
    this.c.syslog(priority, cstr("%s"), cstr(message));
  }

  setEcho(fd: number, on: boolean): void {
    const termios = new Uint8Array(TERMIOS_SIZE);
    this.check("tcgetattr", this.c.tcgetattr(fd, termios));
    setEchoBit(termios, on);
    this.check("tcsetattr", this.c.tcsetattr(fd, TCSANOW, termios));
  }

  ioctl(fd: number, request: number, arg: Uint8Array): void {
    this.check("ioctl", this.c.ioctl(fd, request, arg));
  }

  tryRead(fd: number, buffer: Uint8Array): number {
    const got = Number(this.c.read(fd, buffer, buffer.length));
    if (got >= 0) return got;
    const errno = read.i32(this.c.__errno_location()!, 0);
    if (errno === EAGAIN) return -1;
    throw errnoError("read", errno);
  }

  waitReadable(fd: number, microseconds: number): boolean {
    this.poll.set(fd, microseconds);
    return this.c.ppoll(this.poll.pollfd, 1, this.poll.timeout, null) > 0;
  }

  dropCachedPages(fd: number, offset: number, length: number): void {
    const errno = this.c.posix_fadvise(fd, offset, length, POSIX_FADV_DONTNEED);
    if (errno !== 0) throw errnoError("posix_fadvise", errno);
  }

  punchHole(fd: number, offset: number, length: number): void {
    this.check("fallocate", this.c.fallocate(fd, PUNCH_HOLE_KEEP_SIZE, offset, length));
  }

  /** execve(2); returns (the error) only if it failed. */
  execve(command: string[], env: Record<string, string>): Error {
    const strings: Buffer[] = [];
    // NULL-terminated arrays of pointers to strings that must live until the call.
    const pointers = (items: string[]) => {
      const array = new BigUint64Array(items.length + 1);
      items.forEach((item, i) => {
        strings.push(cstr(item));
        array[i] = BigInt(ptr(strings[strings.length - 1]!));
      });
      return array;
    };
    const argv = pointers(command);
    const envp = pointers(Object.entries(env).map(([name, value]) => `${name}=${value}`));
    this.c.execve(cstr(command[0]!), argv, envp); // returns only if it failed
    return errnoError("execve", read.i32(this.c.__errno_location()!, 0));
  }
}

const compiled = () => import.meta.url.startsWith("file:///$bunfs/");
const bunLibc = new BunLibc();
/** Opened where first used (the HTTP threads): every other thread loads this module too. */
let plainSockets: PlainSockets | undefined;

export const bunRuntime: Runtime = {
  name: `bun ${Bun.version}`,
  libc: bunLibc,
  startWorker(modulePath) {
    // A compiled binary keeps each entry point under /$bunfs/root/, by its path below src/ (see build.ts).
    const url = compiled() ? `file:///$bunfs/root/${modulePath}` : new URL(`../${modulePath}`, import.meta.url).href;
    return new Worker(url);
  },
  fetchOptions(insecure, ca) {
    const raw = { decompress: false };
    if (!insecure && !ca) return raw;
    return { ...raw, tls: { rejectUnauthorized: !insecure, ...(ca ? { ca } : {}) } };
  },
  serve({ port, hostname, tls }, handler) {
    const server = Bun.serve({
      port,
      hostname,
      ...(tls ? { tls } : {}),
      fetch: handler,
      // Never the development error page (a stack and source lines) to whoever sent the request.
      development: false,
      // Bun's production default shares a port with whoever else listens on it (SO_REUSEPORT),
      // so a second server on a taken port would start and get half the connections: refuse it.
      reusePort: false,
      error: () => new Response(null, { status: 500 }),
      maxRequestBodySize: 256 * 2 ** 20,
      idleTimeout: 60,
    });
    return { port: server.port!, stop: () => server.stop(true) };
  },
  listenStream,
  connectStream,
  get plainSockets() {
    return (plainSockets ??= bunPlainSockets(libcName));
  },
  readSync(fd, buffer) {
    return readSync(fd, buffer, 0, buffer.length, null);
  },
  readAt,
  writeAt,
  crc32(data) {
    return Bun.hash.crc32(data);
  },
  collectGarbage() {
    Bun.gc(true);
    return true;
  },
  heapBytes() {
    const { heapSize, extraMemorySize } = heapStats();
    return { objects: heapSize - extraMemorySize, buffers: extraMemorySize };
  },
  // Bun's allocator (mimalloc) gives memory freed back to the kernel after 100 ms. A mount that
  // streams blocks frees and allocates block-sized buffers all the time, and memory given back must
  // be faulted in again, which costs more CPU than moving the bytes; what a stream frees is reused
  // within milliseconds, so a second's delay keeps that, while memory left unused for longer goes
  // back: a heap fragmented by random I/O or large NBD writes does not stay at its high-water mark.
  allocatorSettings: { MIMALLOC_PURGE_DELAY: "1000" },
  exec(command, env) {
    return bunLibc.execve(command, env);
  },
  selfCommand() {
    // In a compiled binary argv[1] is the embedded script path, which the binary supplies by itself.
    return compiled() ? [process.execPath] : [process.execPath, process.argv[1]!];
  },
};
