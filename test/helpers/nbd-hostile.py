#!/usr/bin/env python3
"""A hostile NBD client against a server on a Unix socket: malformed handshakes, bad lengths,
out-of-range and oversize requests, disconnects in the middle of a request, requests after DISC.
Meanwhile a well-behaved client (libnbd) writes and reads back on its own connection, and after
each case a fresh connection must still read: the server stays up and serves the others.

Prints one JSON line per case ({"case", "ok", "detail"}), then one for the bystander.
Usage: nbd-hostile.py SOCKET
"""
import socket
import struct
import threading
import time

import nbd
from nbd_cases import IHAVEOPT, REPLY_MAGIC, REQUEST_MAGIC, SOCK, URI, finish, recv_exact, report, still_up

SIMPLE_REPLY = 0x67446698
READ, WRITE, DISC, FLUSH, TRIM, CACHE, WRITE_ZEROES, BLOCK_STATUS = range(8)
EINVAL, ENOSPC = 22, 28
MAX_REQUEST = 32 * 1024 * 1024


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(SOCK)
    return s


def greeted():
    s = connect()
    recv_exact(s, 18)
    return s


def closed_by_server(s):
    """True once the server closes the connection (reading and dropping whatever it still sends)."""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def transmission():
    """Fixed newstyle, no zeroes, EXPORT_NAME of the default export: simple replies follow."""
    s = greeted()
    s.sendall(struct.pack(">I", 3) + struct.pack(">QII", IHAVEOPT, 1, 0))
    size, _flags = struct.unpack(">QH", recv_exact(s, 10))
    return s, size


def request(s, cmd, offset, length, flags=0, cookie=7, payload=b""):
    s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, cookie, offset, length) + payload)


def reply(s):
    magic, error, cookie = struct.unpack(">IIQ", recv_exact(s, 16))
    assert magic == SIMPLE_REPLY, f"bad reply magic {magic:#x}"
    return error, cookie


def goes_on(s):
    """A good read on the same connection after the case: it is answered, with data."""
    request(s, READ, 0, 512, cookie=99)
    error, cookie = reply(s)
    recv_exact(s, 512)
    return error == 0 and cookie == 99


def run(case, fn):
    try:
        ok, detail = fn()
    except Exception as e:  # noqa: BLE001
        ok, detail = False, repr(e)
    report(case, ok, detail)
    still_up(case)


# The bystander: its own connection, writing and reading back 64 KiB pieces all along.
stop = threading.Event()
bystander = {"ops": 0, "errors": []}


def bystand():
    h = nbd.NBD()
    h.connect_uri(URI)
    n = 0
    while not stop.is_set():
        data = bytes([n % 251 + 1]) * 65536
        at = (16 << 20) + (n % 16) * 65536
        try:
            h.pwrite(data, at)
            if h.pread(65536, at) != data:
                bystander["errors"].append(f"wrong bytes at {at}")
        except Exception as e:  # noqa: BLE001
            bystander["errors"].append(repr(e))
        n += 1
        bystander["ops"] = n
    h.shutdown()


thread = threading.Thread(target=bystand)
thread.start()


# Malformed handshakes.
def garbage_flags():
    s = greeted()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return closed_by_server(s), ""


def unknown_client_flags():
    s = greeted()
    s.sendall(struct.pack(">I", 0xFFFFFFFF))
    return closed_by_server(s), ""


def gone_after_greeting():
    greeted().close()
    return True, ""


def gone_mid_flags():
    s = greeted()
    s.sendall(b"\x00\x00")
    s.close()
    return True, ""


def option_header_cut():
    s = greeted()
    s.sendall(struct.pack(">I", 3) + struct.pack(">Q", IHAVEOPT) + b"\x00\x00")
    s.close()
    return True, ""


def huge_option():
    s = greeted()
    s.sendall(struct.pack(">I", 3) + struct.pack(">QII", IHAVEOPT, 7, 0xFFFFFFFF) + b"\x00" * 1024)
    return closed_by_server(s), ""


def option_over_64k():
    s = greeted()
    name = b"n" * (70 * 1024)
    s.sendall(struct.pack(">I", 3) + struct.pack(">QII", IHAVEOPT, 7, len(name) + 6) + struct.pack(">I", len(name)) + name + b"\x00\x00")
    return closed_by_server(s), ""


def go_name_past_data():
    s = greeted()
    data = struct.pack(">I", 1000) + b"short"
    s.sendall(struct.pack(">I", 3) + struct.pack(">QII", IHAVEOPT, 7, len(data)) + data)
    head = recv_exact(s, 20)
    magic, _opt, rtype, length = struct.unpack(">QIII", head)
    recv_exact(s, length)
    return magic == REPLY_MAGIC and rtype == 0x80000003, hex(rtype)  # NBD_REP_ERR_INVALID


def export_name_then_garbage():
    s, _ = transmission()
    s.sendall(b"\xff" * 64)
    return closed_by_server(s), ""


run("garbage instead of client flags: the connection is closed", garbage_flags)
run("unknown client flags: the connection is closed", unknown_client_flags)
run("disconnect right after the greeting", gone_after_greeting)
run("disconnect in the middle of the client flags", gone_mid_flags)
run("disconnect in the middle of an option header", option_header_cut)
run("an option claiming 4 GiB of data: closed, not read", huge_option)
run("an option of 70 KiB: closed", option_over_64k)
run("GO whose name length runs past its data: NBD_REP_ERR_INVALID", go_name_past_data)
run("garbage after the handshake: closed", export_name_then_garbage)


# Bad lengths, out of range, oversize.
def refused(cmd, offset, length, want, payload=b"", flags=0):
    def case():
        s, _ = transmission()
        request(s, cmd, offset, length, flags=flags, payload=payload)
        error, _ = reply(s)
        if cmd == READ and error == 0:
            recv_exact(s, length)
        return error == want and goes_on(s), f"error {error}"
    return case


def any_answer_then_goes_on(cmd, offset, length, flags=0):
    def case():
        s, _ = transmission()
        request(s, cmd, offset, length, flags=flags)
        error, _ = reply(s)
        if cmd == READ and error == 0:
            recv_exact(s, length)
        return goes_on(s), f"error {error}"
    return case


s0, SIZE = transmission()
s0.close()
run("READ of 4 GiB - 1: EINVAL, and the connection goes on", refused(READ, 0, 0xFFFFFFFF, EINVAL))
run("READ one byte over the 32 MiB limit: EINVAL", refused(READ, 0, MAX_REQUEST + 1, EINVAL))
run("WRITE over the limit, its payload sent: EINVAL, the payload skipped", refused(WRITE, 0, MAX_REQUEST + 1, EINVAL, payload=b"\x5a" * (MAX_REQUEST + 1)))
run("READ at 2^64 - 512: EINVAL", refused(READ, 2**64 - 512, 512, EINVAL))
run("WRITE at 2^64 - 512: ENOSPC", refused(WRITE, 2**64 - 512, 512, ENOSPC, payload=b"\x5a" * 512))
run("READ whose offset + length passes 2^64: EINVAL", refused(READ, 2**64 - 256, 512, EINVAL))
run("READ just past the end: EINVAL", refused(READ, SIZE, 512, EINVAL))
run("TRIM of the whole export and one block more: ENOSPC", refused(TRIM, 0, min(SIZE + 65536, 0xFFFFFFFF), ENOSPC))
run("WRITE_ZEROES of 4 GiB - 1 past the end: ENOSPC", refused(WRITE_ZEROES, SIZE - 512, 0xFFFFFFFF, ENOSPC))
run("an unknown command: EINVAL", refused(99, 0, 512, EINVAL))
run("unknown command flags: answered, and the connection goes on", any_answer_then_goes_on(READ, 0, 512, flags=0x8000))
run("BLOCK_STATUS with no context negotiated: answered, and the connection goes on", any_answer_then_goes_on(BLOCK_STATUS, 0, 65536))


# Disconnects and DISC.
def after_disc():
    s, _ = transmission()
    pack = lambda cmd, cookie, length: struct.pack(">IHHQQI", REQUEST_MAGIC, 0, cmd, cookie, 0, length)
    try:
        s.sendall(pack(DISC, 4, 0) + pack(READ, 5, 512) + pack(WRITE, 6, 512) + b"\x66" * 512)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may close before taking it all
    got = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    h = nbd.NBD()
    h.connect_uri(URI)
    untouched = h.pread(512, 0) != b"\x66" * 512
    h.shutdown()
    return got == b"" and untouched, f"{len(got)} bytes answered, write applied: {not untouched}"


def gone_mid_header():
    s, _ = transmission()
    s.sendall(struct.pack(">IHH", REQUEST_MAGIC, 0, READ))
    s.close()
    return True, ""


def gone_while_answered():
    s, _ = transmission()
    for cookie in range(4):
        request(s, READ, cookie * MAX_REQUEST, MAX_REQUEST, cookie=cookie)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset, not a close
    s.close()
    return True, ""


def gone_mid_payload():
    s, _ = transmission()
    request(s, WRITE, 3 << 20, 1 << 20, payload=b"\x77" * 4096)
    s.close()
    h = nbd.NBD()
    h.connect_uri(URI)
    untouched = h.pread(4096, 3 << 20) != b"\x77" * 4096
    h.shutdown()
    return untouched, ""


run("requests after DISC: not answered, not applied, the connection closed", after_disc)
run("disconnect in the middle of a request header", gone_mid_header)
run("a reset while 128 MiB of reads are answered", gone_while_answered)
run("disconnect in the middle of a write's payload: not applied", gone_mid_payload)

time.sleep(0.5)
stop.set()
thread.join()
report(f"the bystander was served all along ({bystander['ops']} writes read back)", bystander["ops"] > 0 and not bystander["errors"], bystander["errors"][:3])
finish()
