/**
 * The runtime adapter for Deno: libc through `Deno.dlopen`, `Deno.serve`, module workers. Reads of
 * the FUSE device go through FFI here: Deno's node:fs does not know a descriptor opened by another
 * thread.
 */
import { fileURLToPath } from "node:url";
import { crc32 } from "../util/crc32.ts";
import { errnoError } from "./errno-names.ts";
import { AF_UNIX, EAGAIN, fdMessage, PollArgs, receivedFd, SOCK_SEQPACKET, SOCK_STREAM } from "./libc-layouts.ts";
import { listenStream } from "./node-stream.ts";
import { readAt, writeAt } from "./positioned-io.ts";
import { POSIX_FADV_DONTNEED, PUNCH_HOLE_KEEP_SIZE, setEchoBit, TCSANOW, TERMIOS_SIZE, type Libc, type Runtime } from "./runtime.ts";

type Pointer = object | null;
/** The part of Deno's API used here (declared, so that the code type-checks without Deno's types). */
declare const Deno: {
  version: { deno: string };
  mainModule: string;
  execPath(): string;
  dlopen(path: string, symbols: Record<string, { parameters: string[]; result: string }>): { symbols: Record<string, (...args: unknown[]) => unknown> };
  UnsafePointer: { of(buffer: Uint8Array | Int32Array): Pointer; value(p: Pointer): bigint };
  UnsafePointerView: new (p: Pointer) => { getInt32(offset?: number): number };
  serve(
    options: { port: number; hostname: string; cert?: string; key?: string; onListen?: () => void },
    handler: (req: Request) => Promise<Response>,
  ): { addr: { port: number }; shutdown(): Promise<void> };
  createHttpClient(options: { caCerts?: string[] }): unknown;
};


const c = Deno.dlopen("libc.so.6", {
  mount: { parameters: ["buffer", "buffer", "buffer", "u64", "buffer"], result: "i32" },
  umount2: { parameters: ["buffer", "i32"], result: "i32" },
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "i64" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  __errno_location: { parameters: [], result: "pointer" },
  openlog: { parameters: ["buffer", "i32", "i32"], result: "void" },
  syslog: { parameters: ["i32", "buffer", "buffer"], result: "void" },
  tcgetattr: { parameters: ["i32", "buffer"], result: "i32" },
  tcsetattr: { parameters: ["i32", "i32", "buffer"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  posix_fadvise: { parameters: ["i32", "i64", "i64", "i32"], result: "i32" },
  fallocate: { parameters: ["i32", "i32", "i64", "i64"], result: "i32" },
  ppoll: { parameters: ["buffer", "u64", "buffer", "pointer"], result: "i32" },
}).symbols;


const cstr = (s: string) => new TextEncoder().encode(`${s}\0`);

/** Throws with errno when a libc call failed; reads errno before any other JavaScript runs. */
function check(call: string, result: unknown): number {
  const n = Number(result);
  if (n >= 0) return n;
  throw errnoError(call, new Deno.UnsafePointerView(c.__errno_location!() as Pointer).getInt32());
}

const ident = cstr("s3backer"); // openlog keeps the pointer: it must live as long as the process
let syslogOpen = false;
const pollArgs = new PollArgs();

const libc: Libc = {
  mount(source, target, fstype, flags, data) {
    check("mount", c.mount!(cstr(source), cstr(target), cstr(fstype), flags, cstr(data)));
  },
  umount2(target, flags) {
    check("umount2", c.umount2!(cstr(target), flags));
  },
  socketpair(kind = "stream") {
    const fds = new Int32Array(2);
    check("socketpair", c.socketpair!(AF_UNIX, kind === "stream" ? SOCK_STREAM : SOCK_SEQPACKET, 0, fds));
    return [fds[0]!, fds[1]!];
  },
  receiveFd(socket) {
    const { msg, control, keep } = fdMessage((bytes) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes))));
    const got = check("recvmsg", c.recvmsg!(socket, msg, 0));
    void keep; // the buffers it points to must live until recvmsg returns
    return receivedFd(control, got);
  },
  syslog(priority, message) {
    if (!syslogOpen) {
      c.openlog!(ident, 0x01 /* LOG_PID */, 3 << 3 /* LOG_DAEMON */);
      syslogOpen = true;
    }
    c.syslog!(priority, cstr("%s"), cstr(message));
  },
  setEcho(fd, on) {
    const termios = new Uint8Array(TERMIOS_SIZE);
    check("tcgetattr", c.tcgetattr!(fd, termios));
    setEchoBit(termios, on);
    check("tcsetattr", c.tcsetattr!(fd, TCSANOW, termios));
  },
  ioctl(fd, request, arg) {
    check("ioctl", c.ioctl!(fd, BigInt(request), arg));
  },
  tryRead(fd, buffer) {
    const got = Number(c.read!(fd, buffer, BigInt(buffer.length)));
    if (got >= 0) return got;
    const errno = new Deno.UnsafePointerView(c.__errno_location!() as Pointer).getInt32();
    if (errno === EAGAIN) return -1;
    throw errnoError("read", errno);
  },
  waitReadable(fd, microseconds) {
    pollArgs.set(fd, microseconds);
    return Number(c.ppoll!(pollArgs.pollfd, 1, pollArgs.timeout, null)) > 0;
  },
  dropCachedPages(fd, offset, length) {
    const errno = Number(c.posix_fadvise!(fd, BigInt(offset), BigInt(length), POSIX_FADV_DONTNEED));
    if (errno !== 0) throw errnoError("posix_fadvise", errno);
  },
  punchHole(fd, offset, length) {
    check("fallocate", c.fallocate!(fd, PUNCH_HOLE_KEEP_SIZE, BigInt(offset), BigInt(length)));
  },
};

export const denoRuntime: Runtime = {
  name: `deno ${Deno.version.deno}`,
  libc,
  startWorker(modulePath) {
    return new Worker(new URL(`../${modulePath}`, import.meta.url).href, { type: "module" });
  },
  listenStream,
  readSync(fd, buffer) {
    return check("read", c.read!(fd, buffer, BigInt(buffer.length)));
  },
  readAt,
  writeAt,
  crc32,
  collectGarbage: () => false,
  heapBytes() {
    const { heapUsed, external } = process.memoryUsage();
    return { objects: heapUsed, buffers: external };
  },
  allocatorSettings: {},
  // Deno's fetch leaves a deflate body as it is.
  fetchOptions(insecure, ca) {
    if (insecure) throw new Error("--insecure is not available under Deno (its fetch always verifies certificates): use --cacert");
    return ca ? { client: Deno.createHttpClient({ caCerts: [ca] }) } : {};
  },
  serve({ port, hostname, tls }, handler) {
    const server = Deno.serve({ port, hostname, ...(tls ?? {}), onListen: () => {} }, handler);
    return { port: server.addr.port, stop: () => server.shutdown() };
  },
  selfCommand() {
    return [Deno.execPath(), "run", "-A", fileURLToPath(Deno.mainModule)];
  },
};
