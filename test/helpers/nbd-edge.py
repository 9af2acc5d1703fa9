#!/usr/bin/env python3
"""Edge cases of the NBD protocol against a server on a Unix socket, with libnbd (python3-libnbd)
and raw sockets. Prints one JSON line per case: {"case", "ok", "detail"}; after each case a fresh
libnbd connection must still read, so every case also checks that the server stayed up.

Usage: nbd-edge.py SOCKET
"""
import errno
import socket
import struct

import nbd
from nbd_cases import IHAVEOPT, REPLY_MAGIC, REQUEST_MAGIC, SOCK, URI, finish, recv_exact, report, still_up


def handle(strict=True):
    h = nbd.NBD()
    if not strict:
        h.set_strict_mode(0)
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_uri(URI)
    return h


def raw_handshake():
    """Connects, checks the greeting, sends client flags (fixed newstyle, no zeroes)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(SOCK)
    magic, opt, flags = struct.unpack(">QQH", recv_exact(s, 18))
    assert magic == 0x4E42444D41474943 and opt == IHAVEOPT, "bad greeting"
    s.sendall(struct.pack(">I", 3))
    return s


def send_option(s, option, data=b""):
    s.sendall(struct.pack(">QII", IHAVEOPT, option, len(data)) + data)


def read_option_reply(s):
    magic, option, rtype, length = struct.unpack(">QIII", recv_exact(s, 20))
    assert magic == REPLY_MAGIC, "bad option reply magic"
    return option, rtype, recv_exact(s, length)


def closed_by_server(s):
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, socket.timeout):
        return False


def expect_errno(case, fn, want):
    try:
        fn()
        report(case, False, "no error")
    except nbd.Error as e:
        report(case, e.errnum == want, f"errno {e.errnum} ({e.string})")


# Bad option magic: the server drops that connection, and keeps serving others.
s = raw_handshake()
s.sendall(b"NOTMAGIC" + struct.pack(">II", 7, 0))
report("bad option magic closes the connection", closed_by_server(s))
s.close()
still_up("bad option magic")

# An unknown option gets NBD_REP_ERR_UNSUP; ABORT then gets ACK.
s = raw_handshake()
send_option(s, 99, b"xyz")
opt, rtype, _ = read_option_reply(s)
report("unknown option: NBD_REP_ERR_UNSUP", opt == 99 and rtype == 0x80000001, hex(rtype))
send_option(s, 2)
opt, rtype, _ = read_option_reply(s)
report("abort: NBD_REP_ACK", opt == 2 and rtype == 1, rtype)
s.close()
still_up("unknown option")

# Metadata contexts before structured replies: NBD_REP_ERR_INVALID.
s = raw_handshake()
query = b"base:allocation"
send_option(s, 10, struct.pack(">I", 0) + struct.pack(">I", 1) + struct.pack(">I", len(query)) + query)
opt, rtype, _ = read_option_reply(s)
report("meta context without structured replies: NBD_REP_ERR_INVALID", rtype == 0x80000003, hex(rtype))
s.close()

# GO for an export that does not exist: NBD_REP_ERR_UNKNOWN.
s = raw_handshake()
name = b"nosuchexport"
send_option(s, 7, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
opt, rtype, _ = read_option_reply(s)
report("unknown export: NBD_REP_ERR_UNKNOWN", rtype == 0x80000006, hex(rtype))
s.close()

h = handle(strict=False)
size = h.get_size()
report("block size minimum 512", h.get_block_size(nbd.SIZE_MINIMUM) == 512, h.get_block_size(nbd.SIZE_MINIMUM))
report("multi-conn offered", h.can_multi_conn())
expect_errno("read past the end: EINVAL", lambda: h.pread(1024, size - 512), errno.EINVAL)
expect_errno("write past the end: ENOSPC", lambda: h.pwrite(b"x" * 1024, size - 512), errno.ENOSPC)
expect_errno("misaligned read: EINVAL", lambda: h.pread(100, 1), errno.EINVAL)
expect_errno("misaligned write: EINVAL", lambda: h.pwrite(b"y" * 512, 3), errno.EINVAL)
expect_errno("zero past the end: ENOSPC", lambda: h.zero(4096, size), errno.ENOSPC)
h.shutdown()
still_up("requests out of bounds")

# Many requests in flight at once, answered in any order: every one gets its own bytes.
h = handle()
bs = 65536
pieces = {i: bytes([i % 251 + 1]) * bs for i in range(48)}
for i, data in pieces.items():
    h.aio_pwrite(data, i * bs)
while h.aio_in_flight() > 0:
    h.poll(-1)
h.flush()
bufs = {i: nbd.Buffer(bs) for i in pieces}
for i, buf in bufs.items():
    h.aio_pread(buf, i * bs)
while h.aio_in_flight() > 0:
    h.poll(-1)
report("48 writes and reads in flight", all(bufs[i].to_bytearray() == pieces[i] for i in pieces))
h.shutdown()

# Two connections: a FLUSH on one makes the other's completed writes durable (multi-conn), and
# each sees the other's writes.
a, b = handle(), handle()
a.pwrite(b"A" * 4096, 0)
b.pwrite(b"B" * 4096, 4096)
a.flush()
report("two connections see each other's writes", a.pread(4096, 4096) == b"B" * 4096 and b.pread(4096, 0) == b"A" * 4096)
a.shutdown()
b.shutdown()

# A client that disconnects in the middle of a write's payload: that write does not happen, and
# the server stays up.
h = handle()
h.pwrite(b"\x11" * 65536, 2 * 1048576)
h.flush()
h.shutdown()
s = raw_handshake()
send_option(s, 1, b"")  # EXPORT_NAME of the default export: the size and flags follow
recv_exact(s, 10)
s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, 1, 77, 2 * 1048576, 65536) + b"\x22" * 30000)
s.close()
h = handle()
report("an unfinished write is not applied", h.pread(65536, 2 * 1048576) == b"\x11" * 65536)
h.shutdown()

# A request with a bad magic ends that connection only.
s = raw_handshake()
send_option(s, 1, b"")
recv_exact(s, 10)
s.sendall(b"\x00" * 28)
report("bad request magic closes the connection", closed_by_server(s))
s.close()
still_up("bad request magic")

# BLOCK_STATUS (with --listBlocks): a written block is data; one never written is a hole of zeros.
h = handle()


def status(offset):
    seen = []
    h.block_status(bs, offset, lambda ctx, off, entries, err: seen.extend(entries) or 0)
    return seen[1] if len(seen) >= 2 else None


report("block status of a written block: data", status(0) == 0, status(0))
report("block status of a block never written: hole, zero", status(10 * 1048576) == 3, status(10 * 1048576))
h.shutdown()

finish()
