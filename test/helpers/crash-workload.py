#!/usr/bin/env python3
"""A workload for crash-consistency tests (helpers/crash.ts): files of random content and size in
DIR, each made durable (fsync of the file and of the directory) before its line goes to JOURNAL,
a file outside the disk under test. Creates new files, replaces files atomically (a temporary
file, fsync, rename, fsync of the directory) and deletes files, until killed.

JOURNAL lines, appended in order:
  begin NAME SHA256   a new version of NAME is being written (its old one, if any, stays valid)
  done NAME SHA256    NAME holds exactly this, durably
  unlink NAME         NAME is being deleted (it may stay)
  gone NAME           NAME is gone, durably

Usage: crash-workload.py DIR JOURNAL SEED
"""
import hashlib
import os
import random
import sys

root, journal, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
jfd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
names = sorted(n for n in os.listdir(root) if n.startswith("f") and not n.endswith(".tmp"))
SIZES = [1, 100, 4095, 4096, 65536, 200_000, 1_000_000]


def note(line):
    os.write(jfd, (line + "\n").encode())


def write_file(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


n = 0
while True:
    n += 1
    roll = rng.random()
    if names and roll < 0.1:
        name = names.pop(rng.randrange(len(names)))
        note(f"unlink {name}")
        os.unlink(os.path.join(root, name))
        os.fsync(dfd)
        note(f"gone {name}")
        continue
    data = rng.randbytes(rng.choice(SIZES))
    digest = hashlib.sha256(data).hexdigest()
    if names and roll < 0.4:
        name = rng.choice(names)
        note(f"begin {name} {digest}")
        tmp = os.path.join(root, name + ".tmp")
        write_file(tmp, data)
        os.rename(tmp, os.path.join(root, name))
    else:
        name = f"f{seed}-{n}"
        names.append(name)
        note(f"begin {name} {digest}")
        write_file(os.path.join(root, name), data)
    os.fsync(dfd)
    note(f"done {name} {digest}")
