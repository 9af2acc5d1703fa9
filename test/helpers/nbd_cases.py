"""What the tests' raw NBD clients (nbd-edge.py, nbd-hostile.py) share: the server's socket from
the command line, the protocol's magic numbers, one JSON line per case, reading exactly n bytes,
and the check after a case that a fresh connection is still served."""
import json
import sys

import nbd

SOCK = sys.argv[1]
URI = f"nbd+unix:///?socket={SOCK}"
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
failures = 0


def report(case, ok, detail=""):
    global failures
    if not ok:
        failures += 1
    print(json.dumps({"case": case, "ok": bool(ok), "detail": str(detail)}), flush=True)


def recv_exact(s, n):
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(min(n - len(out), 1 << 20))
        if not chunk:
            raise EOFError(f"server closed after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


def still_up(case):
    try:
        h = nbd.NBD()
        h.connect_uri(URI)
        h.pread(512, 0)
        h.shutdown()
    except Exception as e:  # noqa: BLE001
        report(case + ": server still up", False, e)


def finish():
    sys.exit(1 if failures else 0)
