/** PlainSockets (see runtime.ts) through `bun:ffi`. */
import { dlopen, FFIType, read } from "bun:ffi";
import type { PlainSockets } from "./runtime.ts";
import { errnoError } from "./errno-names.ts";
import {
  EAGAIN, EFD_CLOEXEC, EFD_NONBLOCK, EINPROGRESS, EINTR, IPPROTO_TCP, MSG_NOSIGNAL, SO_ERROR, SOCK_CLOEXEC, SOCK_NONBLOCK,
  SOCK_STREAM, SOL_SOCKET, socketAddress, TCP_NODELAY,
} from "./libc-layouts.ts";

export function bunPlainSockets(libcName: string): PlainSockets {
  const { symbols: c } = dlopen(libcName, {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    connect: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    getsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    send: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64_fast },
    recv: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64_fast },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
    poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
    eventfd: { args: [FFIType.u32, FFIType.i32], returns: FFIType.i32 },
    write: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64_fast },
    read: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64_fast },
    __errno_location: { args: [], returns: FFIType.ptr },
  });
  const errno = () => read.i32(c.__errno_location()!, 0);
  const fail = (call: string): never => {
    throw errnoError(call, errno());
  };
  const one = new Int32Array([1]);
  const word = new Int32Array(2);
  const wordLength = new Int32Array([4]);
  const counter = new BigUint64Array([1n]);
  const drained = new BigUint64Array(1);

  return {
    connect(ip, port) {
      const { family, bytes } = socketAddress(ip, port);
      const fd = c.socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) fail("socket");
      // Requests are written whole: nothing to gain from Nagle's delay, and a request's last bytes would wait for an ACK.
      c.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, one, 4);
      if (c.connect(fd, bytes, bytes.length) < 0 && errno() !== EINPROGRESS) {
        const err = errnoError("connect", errno());
        c.close(fd);
        throw err;
      }
      return fd;
    },
    connectError(fd) {
      wordLength[0] = 4;
      if (c.getsockopt(fd, SOL_SOCKET, SO_ERROR, word, wordLength) < 0) return errno();
      return word[0]!;
    },
    send(fd, bytes) {
      const n = Number(c.send(fd, bytes, bytes.length, MSG_NOSIGNAL));
      if (n >= 0) return n;
      const e = errno();
      if (e === EAGAIN || e === EINTR) return 0;
      throw errnoError("send", e);
    },
    recv(fd, into) {
      const n = Number(c.recv(fd, into, into.length, 0));
      if (n >= 0) return n;
      const e = errno();
      if (e === EAGAIN || e === EINTR) return -1;
      throw errnoError("recv", e);
    },
    close(fd) {
      c.close(fd);
    },
    poll(fds, count, timeoutMs) {
      const n = c.poll(fds, count, timeoutMs);
      if (n >= 0) return n;
      if (errno() === EINTR) return 0;
      return fail("poll");
    },
    eventFd() {
      const fd = c.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (fd < 0) fail("eventfd");
      return fd;
    },
    wake(fd) {
      c.write(fd, counter, 8);
    },
    drain(fd) {
      c.read(fd, drained, 8);
    },
  };
}
