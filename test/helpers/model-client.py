#!/usr/bin/env python3
"""
A model-based client of the mounted file, for the concurrency tests and the soak.

Every 512-byte unit of the file holds either zeros or a stamp: its own unit number, a version and
bytes derived from both, so a read tells which write it came from and whether it belongs to
another unit (another block's bytes). The model keeps, per unit, the history of writes (one at a
time per block: writers lock the blocks they touch) and judges each read against the set of
versions it may legally return: the last write completed before the read started, or any write
that overlapped it. A buffered read that overlapped a write to a unit may find that unit's bytes
mixed from versions it may return: Linux does not copy page-cache pages atomically against a
write (a plain pread racing pwrite on tmpfs does it too). That is counted ("torn by the page
cache"), not failed; an O_DIRECT read, which our stack answers from one version of each block,
must never tear.

  run FILE STATE --seed N --seconds S --threads T --block-size B [--prefill] [--mix M]
      random reads, whole and partial writes, zero writes, punch-hole and fsync, buffered and
      O_DIRECT, from T threads; writes what may be on disk after the last fsync to STATE.
      --mix write-read: each thread O_DIRECT-writes whole blocks and reads them back at once.
      --from STATE0: the disk holds what an earlier run's STATE0 says (one version per unit).
      --hot N: the threads work on the first N blocks only (the rest still counts for fsync).
  verify FILE STATE
      reads the whole file and checks every unit against STATE (after a crash and a fresh mount).

Prints one JSON line: counts, and the first few failures.
"""
import contextlib
import ctypes
import json
import mmap
import os
import random
import sys
import threading
import time

UNIT = 512
MAGIC = b"S3BM"
ZEROS = bytes(UNIT)
# The end of a write still under way, or of one that failed (it may or may not have landed).
INFINITY = float("inf")
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]


def stamp(unit, version):
    """The 512 bytes of `unit` at `version` (0: zeros)."""
    if version == 0:
        return ZEROS
    head = MAGIC + unit.to_bytes(8, "little") + version.to_bytes(8, "little")
    word = ((unit * 2654435761) ^ (version * 40503) ^ 0x5A5A5A5A5A5A5A5A) & 0xFFFFFFFFFFFFFFFF
    return head + (word.to_bytes(8, "little") * 62)[: UNIT - len(head)]


def identify(unit, data):
    """What a unit read back holds: ("ok", version), ("foreign", other unit), or ("garbage", None)."""
    if data == ZEROS:
        return "ok", 0
    if data[:4] != MAGIC:
        return "garbage", None
    owner = int.from_bytes(data[4:12], "little")
    version = int.from_bytes(data[12:20], "little")
    if stamp(owner, version) != data:
        return "garbage", None
    return ("ok", version) if owner == unit else ("foreign", owner)


class Model:
    def __init__(self, units, block_units):
        self.block_units = block_units
        # Per unit: [(version, start, end)], in order; the first is what the disk held at the start.
        self.history = [[[0, 0, 0]] for _ in range(units)]
        # Per unit: index in its history of the first write that may be on disk after a crash.
        self.durable = [0] * units
        self.lock = threading.Lock()
        self.block_locks = [threading.Lock() for _ in range(units // block_units + 1)]
        self.next_version = 1

    def versions(self, n):
        with self.lock:
            v = self.next_version
            self.next_version += n
            return v

    def begin(self, first_unit, versions, start):
        """A write is under way: from now on reads may see it. Returns its entries, to end()."""
        entries = [[v, start, INFINITY] for v in versions]
        with self.lock:
            for i, entry in enumerate(entries):
                self.history[first_unit + i].append(entry)
        return entries

    def end(self, entries, end):
        with self.lock:
            for entry in entries:
                entry[2] = end

    def legal(self, unit, start, end):
        """Versions a read of `unit` over [start, end] may return."""
        h = self.history[unit]
        last = 0
        for i, (_, _, e) in enumerate(h):
            if e < start:
                last = i
        return {h[last][0]} | {v for v, s, _ in h[last + 1:] if s < end}

    def torn_between_legal(self, unit, data, start, end):
        """
        Whether every byte of a unit read back is that byte of some version the read may return,
        with more than one such version: what a read through the page cache may see while a write
        to the same bytes runs (Linux copies pages in and out without making one atomic against
        the other; a plain pread against pwrite on tmpfs shows it too).
        """
        legal = self.legal(unit, start, end)
        if len(legal) < 2:
            return False
        stamps = [stamp(unit, v) for v in legal]
        return all(any(s[i] == b for s in stamps) for i, b in enumerate(data))

    def pieces(self, unit, data):
        """Which versions of `unit` (or other bytes) each stretch of a torn read came from."""
        with self.lock:
            candidates = [v for v, _, _ in self.history[unit]]
        stamps = {v: stamp(unit, v) for v in [0] + candidates}
        runs = []
        for at in range(0, UNIT, 8):
            chunk = data[at:at + 8]
            label = next((f"v{v}" for v, s in stamps.items() if s[at:at + 8] == chunk), "other")
            if runs and runs[-1][1] == label:
                runs[-1][2] = at + 8
            else:
                runs.append([at, label, at + 8])
        return ", ".join(f"{a}-{b - 1}: {label}" for a, label, b in runs)

    def synced(self, start):
        """An fsync that began at `start` returned: every write completed before it is durable."""
        with self.lock:
            for u, h in enumerate(self.history):
                for i in range(len(h) - 1, self.durable[u] - 1, -1):
                    if h[i][2] < start:
                        self.durable[u] = i
                        break

    def after_crash(self):
        """Per unit, the versions it may hold after a crash: the durable one or any later."""
        return [sorted({v for v, _, _ in h[self.durable[u]:]}) for u, h in enumerate(self.history)]


class Worker(threading.Thread):
    def __init__(self, path, model, rng, deadline, size, block_size, report, mix):
        super().__init__(daemon=True)
        self.mix = mix
        self.path, self.model, self.rng, self.deadline = path, model, rng, deadline
        self.size, self.block_size, self.report = size, block_size, report
        self.fds = {}
        # Page-aligned, for O_DIRECT.
        self.buf = mmap.mmap(-1, 4 * block_size + (1 << 18))

    def fd(self, direct):
        fd = self.fds.get(direct)
        # Reopen now and then: handles come and go (a close flushes, so not while writes must pile up).
        if fd is None or (self.mix == "random" and self.rng.random() < 0.03):
            if fd is not None:
                os.close(fd)
            fd = os.open(self.path, os.O_RDWR | (os.O_DIRECT if direct else 0))
            self.fds[direct] = fd
        return fd

    def run(self):
        try:
            while time.monotonic() < self.deadline:
                self.step()
        except Exception as e:  # a bug in the client, not the disk: report it loudly
            self.report("client error", repr(e))
        for fd in self.fds.values():
            os.close(fd)

    def span(self, max_units):
        """A random unit range, often block-aligned, sometimes crossing block boundaries."""
        units = self.size // UNIT
        bu = self.block_size // UNIT
        r = self.rng.random()
        if r < 0.4:  # whole blocks
            n = bu * self.rng.randint(1, max(1, min(4, max_units // bu, units // bu)))
            first = self.rng.randrange(0, units - n + 1, bu)
        else:
            n = self.rng.randint(1, min(max_units, 2 * bu, units))
            first = self.rng.randrange(0, units - n + 1)
        return first, n

    def step(self):
        if self.mix == "write-read":
            bu = self.block_size // UNIT
            n = bu * self.rng.randint(1, 2)
            span = (self.rng.randrange(0, self.size // UNIT - n + 1, bu), n)
            self.write(True, zero=False, span=span)
            self.read(True, span)
            return
        r = self.rng.random()
        direct = self.rng.random() < 0.5
        if r < 0.45:
            self.read(direct)
        elif r < 0.50:
            self.sequential_read(direct)
        elif r < 0.85:
            self.write(direct, zero=self.rng.random() < 0.1)
        elif r < 0.95:
            self.punch()
        else:
            start = time.monotonic_ns()
            try:
                os.fsync(self.fd(self.rng.random() < 0.5))
            except OSError as e:
                self.report("fsync error", str(e))
                return
            self.model.synced(start)
            self.report("fsync", None)

    @contextlib.contextmanager
    def locked(self, first, n):
        """Holds the locks of the blocks that units [first, first+n) touch: one writer per block."""
        bu = self.model.block_units
        locks = [self.model.block_locks[b] for b in range(first // bu, (first + n - 1) // bu + 1)]
        for lock in locks:
            lock.acquire()
        try:
            yield
        finally:
            for lock in locks:
                lock.release()

    def write(self, direct, zero, span=None):
        first, n = span or self.span(4 * self.block_size // UNIT)
        with self.locked(first, n):
            base = 0 if zero else self.model.versions(n)
            versions = [0 if zero else base + i for i in range(n)]
            view = memoryview(self.buf)[: n * UNIT]
            for i, v in enumerate(versions):
                view[i * UNIT:(i + 1) * UNIT] = stamp(first + i, v)
            fd = self.fd(direct)
            entries = self.model.begin(first, versions, time.monotonic_ns())
            try:
                done = os.pwritev(fd, [view], first * UNIT)
            except OSError as e:
                self.report("write error", f"{n} units at unit {first}: {e}")
                return
            if done != n * UNIT:
                self.report("write error", f"short write {done} of {n * UNIT}")
                return
            self.model.end(entries, time.monotonic_ns())
            self.report("write", None)

    def punch(self):
        first, n = self.span(8 * self.block_size // UNIT)
        with self.locked(first, n):
            fd = self.fd(self.rng.random() < 0.5)
            entries = self.model.begin(first, [0] * n, time.monotonic_ns())
            if libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, first * UNIT, n * UNIT) != 0:
                self.report("punch error", os.strerror(ctypes.get_errno()))
                return
            self.model.end(entries, time.monotonic_ns())
            self.report("punch", None)

    def read(self, direct, span=None):
        first, n = span or self.span(512)
        view = memoryview(self.buf)[: n * UNIT]
        start = time.monotonic_ns()
        try:
            got = os.preadv(self.fd(direct), [view], first * UNIT)
        except OSError as e:
            self.report("read error", f"{n} units at unit {first}: {e}")
            return
        end = time.monotonic_ns()
        if got != n * UNIT:
            self.report("read error", f"short read {got} of {n * UNIT}")
            return
        for i in range(n):
            unit = first + i
            kind, value = identify(unit, bytes(view[i * UNIT:(i + 1) * UNIT]))
            if kind == "foreign":
                self.report("foreign", f"unit {unit} (block {unit // self.model.block_units}) held unit {value}'s bytes")
            elif kind == "garbage" and not direct and self.model.torn_between_legal(unit, bytes(view[i * UNIT:(i + 1) * UNIT]), start, end):
                self.report("torn by the page cache", None)
            elif kind == "garbage":
                mode = "O_DIRECT" if direct else "buffered"
                self.report("garbage", f"unit {unit} (block {unit // self.model.block_units}) held bytes of no write, {mode} read of units {first}-{first + n - 1}: {self.model.pieces(unit, bytes(view[i * UNIT:(i + 1) * UNIT]))}")
            else:
                legal = self.model.legal(unit, start, end)
                if value not in legal:
                    self.report("stale", f"unit {unit} (block {unit // self.model.block_units}) read version {value}, legal {sorted(legal)}")
        self.report("read", None)

    def sequential_read(self, direct):
        bu = self.block_size // UNIT
        units = self.size // UNIT
        first = self.rng.randrange(0, units, bu)
        step = min(bu * 4, 256)
        for at in range(first, min(units, first + 16 * bu), step):
            self.read(direct, (at, min(step, units - at)))


class Report:
    def __init__(self):
        self.counts = {}
        self.failures = []
        self.lock = threading.Lock()

    def __call__(self, kind, detail):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if detail is not None and len(self.failures) < 20:
                self.failures.append(f"{kind}: {detail}")

    def dump(self, **extra):
        failed = sum(v for k, v in self.counts.items() if k not in ("read", "write", "punch", "fsync", "torn by the page cache"))
        print(json.dumps({"failed": failed, "counts": self.counts, "failures": self.failures, **extra}))
        sys.stdout.flush()


def prefill(path, size, model, block_size):
    """Every unit gets a first version, written in big pieces and fsynced."""
    fd = os.open(path, os.O_RDWR)
    chunk = 1 << 20
    for off in range(0, size, chunk):
        n = min(chunk, size - off) // UNIT
        first = off // UNIT
        base = model.versions(n)
        os.pwrite(fd, b"".join(stamp(first + i, base + i) for i in range(n)), off)
        for i in range(n):
            model.history[first + i] = [[base + i, 0, 0]]
    os.fsync(fd)
    os.close(fd)


def run(path, state, seed, seconds, threads, block_size, fill, mix, start, hot):
    size = os.stat(path).st_size
    model = Model(size // UNIT, block_size // UNIT)
    if fill:
        prefill(path, size, model, block_size)
    if start:
        with open(start) as f:
            units = json.load(f)["units"]
        for u, legal in enumerate(units):
            if len(legal) != 1:
                sys.exit(f"{start}: unit {u} may hold any of {legal}, not one version")
            model.history[u] = [[legal[0], 0, 0]]
        model.next_version = max(v for (v,) in units) + 1
    report = Report()
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    span = min(size, hot * block_size) if hot else size
    workers = [Worker(path, model, random.Random(rng.random()), deadline, span, block_size, report, mix) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    with open(state, "w") as f:
        json.dump({"block_size": block_size, "units": model.after_crash()}, f)
    report.dump(seed=seed)


def verify(path, state):
    with open(state) as f:
        saved = json.load(f)
    block_units = saved["block_size"] // UNIT
    report = Report()
    with open(path, "rb") as f:
        for unit, legal in enumerate(saved["units"]):
            data = f.read(UNIT)
            kind, value = identify(unit, data)
            if kind == "ok" and value in legal:
                continue
            detail = f"unit {unit} (block {unit // block_units}): {kind} {value}, legal {legal[-5:]}"
            report("lost" if kind == "ok" else kind, detail)
    report("read", None)
    report.dump()


def main():
    args = sys.argv[1:]
    opts = {}
    rest = []
    i = 0
    while i < len(args):
        if args[i].startswith("--"):
            if args[i] == "--prefill":
                opts["prefill"] = True
            else:
                opts[args[i][2:]] = args[i + 1]
                i += 1
        else:
            rest.append(args[i])
        i += 1
    if rest[0] == "run":
        run(rest[1], rest[2], int(opts["seed"]), float(opts["seconds"]), int(opts["threads"]), int(opts["block-size"]), opts.get("prefill", False), opts.get("mix", "random"), opts.get("from"), int(opts.get("hot", 0)))
    elif rest[0] == "verify":
        verify(rest[1], rest[2])
    else:
        sys.exit(f"unknown command {rest[0]}")


if __name__ == "__main__":
    main()
