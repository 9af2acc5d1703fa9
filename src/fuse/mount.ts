/**
 * Mounting and unmounting: mount(2) on /dev/fuse as root, else fusermount3 (or fusermount), which
 * opens the device for us and sends the descriptor back over a Unix socket.
 */
import { spawnSync } from "node:child_process";
import { closeSync, openSync, readFileSync, realpathSync, statSync, writeFileSync } from "node:fs";
import { ConfigError, messageOf } from "../errors.ts";
import { runtime } from "../runtime/index.ts";
import { commandPath } from "../util/command-path.ts";
import { MAX_WRITE } from "./session.ts";

/** How the disk is mounted: the FUSE options of the command line (config/fuse-options.ts reads them). */
export interface FuseOptions {
  allowOther: boolean;
  /** -o allow_root: mounted for every user, but only root and the owner are served (as libfuse does it). */
  allowRoot: boolean;
  defaultPermissions: boolean;
  uid: number;
  gid: number;
  /** Kernel read-ahead in bytes (the original's 0 would turn buffered reads into 4 KiB requests). */
  maxReadahead: number;
  /** -o max_read, -o max_write: the largest read and write the kernel may send (ours at most). */
  maxRead: number | undefined;
  maxWrite: number | undefined;
  /** Seconds the kernel may keep a name, and attributes (undefined: ours), and a name's absence. */
  entryTimeout: number | undefined;
  attrTimeout: number | undefined;
  negativeTimeout: number;
  /** -o umask: every inode's permissions are 0777 & ~umask (libfuse's meaning). */
  umask: number | undefined;
  /** -o sync_read: the kernel sends a file's reads one at a time. */
  syncRead: boolean;
  /** -s: one request handled at a time. */
  singleThreaded: boolean;
  fsname: string;
  subtype: string;
  /** Options passed to the kernel's mount unchanged (nodev, noexec, ...). */
  mountFlags: string[];
}

const MS_RDONLY = 1;
const MS_NOSUID = 2;
const MS_NODEV = 4;
const MS_NOEXEC = 8;
const MS_SYNCHRONOUS = 16;
const MS_DIRSYNC = 128;
const MS_NOATIME = 1024;
const MS_NODIRATIME = 2048;
const MS_RELATIME = 1 << 21;
const MS_STRICTATIME = 1 << 24;
const MNT_DETACH = 2;

const FLAG_BITS: Record<string, number> = {
  ro: MS_RDONLY, nosuid: MS_NOSUID, nodev: MS_NODEV, noexec: MS_NOEXEC, sync: MS_SYNCHRONOUS, dirsync: MS_DIRSYNC,
  noatime: MS_NOATIME, nodiratime: MS_NODIRATIME, relatime: MS_RELATIME, strictatime: MS_STRICTATIME,
};
const CLEARS: Record<string, string> = { suid: "nosuid", dev: "nodev", exec: "noexec", async: "sync" };

export interface Mounted {
  fd: number;
  /** How to unmount: mount(2) mounts with umount2, fusermount mounts with `fusermount -u`. */
  via: "mount" | "fusermount";
  /** The mount point's real path, resolved before mounting. */
  path: string;
}

/** Refuses a mount point that is missing, not a directory, already mounted on, or a dead FUSE mount. */
export function checkMountpoint(path: string): void {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === "ENOTCONN") throw new ConfigError(`${path}: a dead mount is still there ('Transport endpoint is not connected'): run 'umount -l ${path}'`);
    throw new ConfigError(`mount point ${path}: ${messageOf(err)}`);
  }
  if (!st.isDirectory()) throw new ConfigError(`mount point ${path} is not a directory`);
  if (isMounted(path)) throw new ConfigError(`${path} is already a mount point: unmount it first`);
}

/** True if `path` is the mount point of something (per /proc/self/mountinfo). */
export function isMounted(path: string): boolean {
  const target = realpathOr(path);
  const info = readFileSync("/proc/self/mountinfo", "utf8");
  return info.split("\n").some((line) => unescapeMount(line.split(" ")[4] ?? "") === target);
}

/**
 * Raises the kernel's read-ahead on a new mount (its device's read_ahead_kb in sysfs) to `bytes`.
 * INIT cannot: the kernel offers its default, 128 KiB, as the most it accepts, so a sequential
 * read came as eight requests per MiB. Call it once INIT is answered (the answer sets the value),
 * with `mountpoint` resolved before mounting: resolving it now would ask this very process, through
 * FUSE, while it waits. Needs root; returns why it could not, or undefined.
 */
export function raiseReadahead(mountpoint: string, bytes: number): string | undefined {
  const line = readFileSync("/proc/self/mountinfo", "utf8").split("\n").findLast((l) => unescapeMount(l.split(" ")[4] ?? "") === mountpoint);
  if (!line) return "the mount is not in /proc/self/mountinfo";
  const knob = `/sys/class/bdi/${line.split(" ")[2]}/read_ahead_kb`;
  try {
    if (Number(readFileSync(knob, "utf8")) * 1024 < bytes) writeFileSync(knob, String(Math.floor(bytes / 1024)));
    return undefined;
  } catch (err) {
    return `${knob}: ${messageOf(err)}`;
  }
}

function realpathOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function mount(mountpoint: string, fuse: FuseOptions): Mounted {
  const path = realpathOr(mountpoint);
  const isRoot = process.getuid?.() === 0;
  if (isRoot) return { fd: mountDirect(mountpoint, fuse), via: "mount", path };
  return { fd: mountWithFusermount(mountpoint, fuse), via: "fusermount", path };
}

function mountDirect(mountpoint: string, fuse: FuseOptions): number {
  let fd: number;
  try {
    fd = openSync("/dev/fuse", "r+");
  } catch (err) {
    throw new ConfigError(`cannot open /dev/fuse: ${messageOf(err)} (is the fuse module loaded? in a container, pass --device /dev/fuse)`);
  }
  let flags = 0;
  for (const opt of fuse.mountFlags) {
    if (opt in FLAG_BITS) flags |= FLAG_BITS[opt]!;
    else if (opt in CLEARS) flags &= ~FLAG_BITS[CLEARS[opt]!]!;
  }
  const data = [
    `fd=${fd}`,
    "rootmode=40000",
    `user_id=${process.getuid?.() ?? 0}`,
    `group_id=${process.getgid?.() ?? 0}`,
    ...kernelOptions(fuse),
  ].join(",");
  try {
    runtime.libc.mount(fuse.fsname, mountpoint, `fuse.${fuse.subtype}`, flags, data);
  } catch (err) {
    closeSync(fd);
    throw new ConfigError(`mount ${mountpoint}: ${messageOf(err)}`);
  }
  return fd;
}

/** The FUSE options the kernel itself takes. allow_root is allow_other to the kernel: the session refuses the others. */
function kernelOptions(fuse: FuseOptions): string[] {
  return [
    `max_read=${Math.min(fuse.maxRead ?? MAX_WRITE, MAX_WRITE)}`,
    ...(fuse.allowOther || fuse.allowRoot ? ["allow_other"] : []),
    ...(fuse.defaultPermissions ? ["default_permissions"] : []),
  ];
}

function fusermountBinary(): string {
  for (const name of ["fusermount3", "fusermount"]) {
    const found = commandPath(name);
    if (found) return found;
  }
  throw new ConfigError("not running as root and no fusermount3 (or fusermount) found: install the fuse3 package or run as root");
}

function mountWithFusermount(mountpoint: string, fuse: FuseOptions): number {
  const binary = fusermountBinary();
  const [ours, theirs] = runtime.libc.socketpair();
  const options = [
    `fsname=${fuse.fsname}`,
    `subtype=${fuse.subtype}`,
    ...kernelOptions(fuse),
    ...fuse.mountFlags,
  ].join(",");
  const result = spawnSync(binary, ["-o", options, "--", mountpoint], {
    stdio: ["ignore", "inherit", "pipe", theirs],
    env: { ...process.env, _FUSE_COMMFD: "3" },
    encoding: "utf8",
  });
  closeSync(theirs);
  if (result.status !== 0) {
    closeSync(ours);
    throw new ConfigError(`${binary} failed: ${(result.stderr || `exit ${result.status}`).trim()}`);
  }
  try {
    return runtime.libc.receiveFd(ours);
  } finally {
    closeSync(ours);
  }
}

/**
 * Unmounts. A busy mount (a loop device still on the file) is detached lazily: the kernel then
 * keeps the connection until its last user is gone, and only then do the readers see ENODEV.
 */
export function unmount(mountpoint: string, via: Mounted["via"]): "done" | "lazy" {
  if (via === "fusermount") {
    const r = spawnSync(fusermountBinary(), ["-u", "-z", "--", mountpoint], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`fusermount -u: ${r.stderr.trim()}`);
    return "done";
  }
  try {
    runtime.libc.umount2(mountpoint, 0);
    return "done";
  } catch (err) {
    if ((err as { code?: string }).code !== "EBUSY") throw err;
    runtime.libc.umount2(mountpoint, MNT_DETACH);
    return "lazy";
  }
}
