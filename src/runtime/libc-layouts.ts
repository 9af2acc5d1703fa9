/**
 * The libc constants and struct layouts both FFI adapters use (Linux, 64-bit): one place for the
 * byte offsets, the adapters only say how to take an address.
 */
import { errnoError } from "./errno-names.ts";

export const AF_UNIX = 1;
export const SOCK_STREAM = 1;
export const SOCK_SEQPACKET = 5;
export const EAGAIN = 11;
const SOL_SOCKET = 1;
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
const POLLIN = 1;

/** The descriptor a recvmsg(2) of `fdMessage` received (`got` is what it returned). */
export function receivedFd(control: Uint8Array, got: number): number {
  if (got === 0) throw errnoError("recvmsg (fusermount closed the socket)", EIO);
  const cmsg = new DataView(control.buffer, control.byteOffset);
  if (cmsg.getInt32(8, true) !== SOL_SOCKET || cmsg.getInt32(12, true) !== SCM_RIGHTS) {
    throw errnoError("recvmsg (no file descriptor received)", EIO);
  }
  return cmsg.getInt32(16, true);
}
