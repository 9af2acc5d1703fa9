/**
 * The libc constants and struct layouts both FFI adapters use (Linux, 64-bit): one place for the
 * byte offsets, the adapters only say how to take an address.
 */
import { isIPv4, isIPv6 } from "node:net";
import { errnoError } from "./errno-names.ts";
import { POLLIN } from "./runtime.ts";

export const AF_UNIX = 1;
export const SOCK_STREAM = 1;
export const SOCK_SEQPACKET = 5;
export const EAGAIN = 11;
export const EINTR = 4;
export const EINPROGRESS = 115;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const IPPROTO_TCP = 6;
export const TCP_NODELAY = 1;
export const SO_ERROR = 4;
/** send(2) to a peer that closed returns EPIPE instead of raising SIGPIPE. */
export const MSG_NOSIGNAL = 0x4000;
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const EIO = 5;

/**
 * A struct msghdr for recvmsg(2) of one byte and one SCM_RIGHTS descriptor: 56 bytes, with its
 * iovec (at 16, one entry) and its control buffer (at 32, 64 bytes). `addressOf` gives a buffer's
 * address; the buffers are returned so that they stay alive across the call.
 */
export function fdMessage(addressOf: (bytes: Uint8Array) => bigint): { msg: Uint8Array; control: Uint8Array; keep: Uint8Array[] } {
  const byte = new Uint8Array(1);
  const iov = new Uint8Array(16);
  const iovView = new DataView(iov.buffer);
  iovView.setBigUint64(0, addressOf(byte), true);
  iovView.setBigUint64(8, 1n, true);
  const control = new Uint8Array(64);
  const msg = new Uint8Array(56);
  const m = new DataView(msg.buffer);
  m.setBigUint64(16, addressOf(iov), true);
  m.setBigUint64(24, 1n, true);
  m.setBigUint64(32, addressOf(control), true);
  m.setBigUint64(40, BigInt(control.length), true);
  return { msg, control, keep: [byte, iov] };
}

/** A struct pollfd (8 bytes) and a struct timespec (16 bytes), filled in place for each ppoll(2). */
export class PollArgs {
  readonly pollfd = new Int32Array(2);
  readonly timeout = new Int32Array(4);

  /** Asks whether `fd` has something to read, waiting at most `microseconds` (under a second). */
  set(fd: number, microseconds: number): void {
    this.pollfd[0] = fd;
    this.pollfd[1] = POLLIN; // events; revents (the high half) cleared
    this.timeout[2] = microseconds * 1000; // tv_sec stays 0; tv_nsec
  }
}

/** The descriptor a recvmsg(2) of `fdMessage` received (`got` is what it returned). */
export function receivedFd(control: Uint8Array, got: number): number {
  if (got === 0) throw errnoError("recvmsg (fusermount closed the socket)", EIO);
  const cmsg = new DataView(control.buffer, control.byteOffset);
  if (cmsg.getInt32(8, true) !== SOL_SOCKET || cmsg.getInt32(12, true) !== SCM_RIGHTS) {
    throw errnoError("recvmsg (no file descriptor received)", EIO);
  }
  return cmsg.getInt32(16, true);
}

/** A struct sockaddr_in (16 bytes) or sockaddr_in6 (28 bytes) for an IP address and port. */
export function socketAddress(ip: string, port: number): { family: number; bytes: Uint8Array } {
  if (isIPv4(ip)) {
    const bytes = new Uint8Array(16);
    new DataView(bytes.buffer).setUint16(0, AF_INET, true);
    new DataView(bytes.buffer).setUint16(2, port, false);
    bytes.set(ip.split(".").map(Number), 4);
    return { family: AF_INET, bytes };
  }
  if (!isIPv6(ip)) throw new Error(`not an IP address: ${ip}`);
  const bytes = new Uint8Array(28);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, AF_INET6, true);
  view.setUint16(2, port, false);
  ipv6Groups(ip).forEach((group, i) => view.setUint16(8 + 2 * i, group, false));
  return { family: AF_INET6, bytes };
}

/** The eight 16-bit groups of an IPv6 address (with "::" and a trailing dotted IPv4 part expanded). */
function ipv6Groups(ip: string): number[] {
  const text = ip.replace(/%.*$/, "");
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  const v4 = dotted ? dotted[1]!.split(".").map(Number) : [];
  const head = dotted ? `${text.slice(0, -dotted[1]!.length)}${((v4[0]! << 8) | v4[1]!).toString(16)}:${((v4[2]! << 8) | v4[3]!).toString(16)}` : text;
  const [left, right] = head.split("::") as [string, string | undefined];
  const parse = (part: string) => (part ? part.split(":").map((g) => parseInt(g, 16)) : []);
  const l = parse(left);
  const r = right === undefined ? [] : parse(right);
  return [...l, ...new Array(8 - l.length - r.length).fill(0), ...r];
}
