#!/usr/bin/env python3
"""
A writer whose every write is known, for a snapshot taken under load (mount/snapshots.test.ts).

It writes 4 KiB records with O_DIRECT at random slots of a range of FILE. A record names its slot,
its sequence number and the seed; the rest is bytes derived from those, so a torn, misplaced or
foreign record shows. The slot of write SEQ follows from the seed alone: `check` needs no journal.

  write FILE START SLOTS SEED EVERY QUIET MARK AFTER
      writes records 1, 2, ...; prints "wrote SEQ" once write SEQ returned, and "fsynced SEQ" once
      an fsync after write SEQ returned (every EVERY writes, but none from write QUIET until MARK
      exists: then only a snapshot's own flush makes those writes durable). Once the file MARK
      exists it prints "mark SEQ" (the last write it had started before it saw MARK), writes AFTER
      more, fsyncs and prints "done SEQ". Every line is flushed at once.
  check FILE START SLOTS SEED LOW HIGH SYNCED
      reads the range (O_DIRECT) and checks each slot: it must hold the slot's last write with
      seq <= LOW, or a later one with seq <= HIGH (zeros stand for "no write yet"). Prints one JSON
      line: slots holding records, holding zeros, holding a write newer than LOW's; slots whose
      last write by LOW came after the fsync of write SYNCED (so only a flush made it durable);
      how many slots are wrong, and the first few of them.
"""
import hashlib
import json
import mmap
import os
import random
import sys

RECORD = 4096
MAGIC = b"S3SNAPWR"
ZEROS = bytes(RECORD)


def record(seed, slot, seq):
    head = MAGIC + slot.to_bytes(8, "little") + seq.to_bytes(8, "little") + seed.to_bytes(8, "little")
    fill = hashlib.sha256(f"{seed} {slot} {seq}".encode()).digest()
    return head + fill * ((RECORD - len(head)) // len(fill))


def slots_of(seed, slots, count):
    """The slot of each write 1..count (index 0 unused)."""
    rng = random.Random(seed)
    return [-1] + [rng.randrange(slots) for _ in range(count)]


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def write(path, start, slots, seed, every, quiet, mark_path, after):
    rng = random.Random(seed)
    buf = mmap.mmap(-1, RECORD)  # page-aligned, for O_DIRECT
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    seq, mark = 0, None
    while mark is None or seq < mark + after:
        if mark is None and os.path.exists(mark_path):
            mark = seq
            say(f"mark {seq}")
        seq += 1
        slot = rng.randrange(slots)
        buf[:] = record(seed, slot, seq)
        if os.pwrite(fd, buf, start + slot * RECORD) != RECORD:
            raise OSError(f"short write of record {seq}")
        say(f"wrote {seq}")
        if seq % every == 0 and (seq < quiet or mark is not None):
            os.fsync(fd)
            say(f"fsynced {seq}")
    os.fsync(fd)
    say(f"done {seq}")


def check(path, start, slots, seed, low, high, synced):
    where = slots_of(seed, slots, high)
    history = [[0] for _ in range(slots)]  # per slot: its writes' seqs, 0 standing for zeros
    for seq in range(1, high + 1):
        history[where[seq]].append(seq)
    buf = mmap.mmap(-1, slots * RECORD)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    got = os.preadv(fd, [buf], start)
    os.close(fd)
    counts = {"records": 0, "zeros": 0, "newer": 0, "unsynced": 0, "problems": []}
    if got != slots * RECORD:
        counts["problems"].append(f"short read: {got} bytes")
    for slot in range(slots):
        data = buf[slot * RECORD:(slot + 1) * RECORD]
        seqs = history[slot]
        floor = max(s for s in seqs if s <= low)
        allowed = {s for s in seqs if s >= floor}
        if data == ZEROS:
            seq = 0
        else:
            seq = int.from_bytes(data[16:24], "little")
            if data != record(seed, slot, seq):
                counts["problems"].append(f"slot {slot}: not a whole record of its own (torn, misplaced or foreign)")
                continue
        if seq not in allowed:
            counts["problems"].append(f"slot {slot}: holds write {seq}, may hold {sorted(allowed)[:6]}")
            continue
        counts["zeros" if seq == 0 else "records"] += 1
        counts["newer"] += seq > floor
        counts["unsynced"] += floor > synced
    counts["bad"] = len(counts["problems"])
    counts["problems"] = counts["problems"][:8]
    print(json.dumps(counts))


if __name__ == "__main__":
    mode, path, *nums = sys.argv[1:]
    if mode == "write":
        *counts, mark_path, after = nums
        write(path, *map(int, counts), mark_path, int(after))
    else:
        check(path, *map(int, nums))
