/**
 * Paths named by flags and arguments: what each may name, checked before anything touches it, and
 * opened so that a swap in between (a link planted, a FIFO put there) is caught as well. A refusal
 * is one line naming the flag as the user typed it (`typed`), and changes nothing.
 *
 * - Files we write (--blockCacheFile, --logFile, --pidFile, --statsFileMirror): an existing regular
 *   file, or a new name in an existing directory. Never a directory, device, FIFO or socket, and
 *   never a symbolic link: we create, append to, truncate, narrow (chmod) or replace these, and a
 *   link planted at the name (to /etc/passwd, say) would make us do that to its target. Opened
 *   with O_NOFOLLOW and checked again with fstat on the descriptor.
 * - Files we read (-F/--configFile, --accessFile, --passwordFile, --cacert, ~/.aws files): a regular
 *   file (or /dev/null), links followed (reading through one changes nothing), of at most
 *   MAX_INPUT_BYTES. Opened with O_NONBLOCK, so a FIFO with no writer cannot hang us, and read no
 *   further than the cap.
 * - Directories (the mount point, --test's directory): an existing directory, links followed.
 */
import { accessSync, closeSync, constants, fstatSync, lstatSync, openSync, readFileSync, readlinkSync, readSync, statSync, unlinkSync, type Stats } from "node:fs";
import { dirname } from "node:path";
import { ConfigError, messageOf } from "../errors.ts";

/** The most a file we read (config, credentials, password, CA certificates) may hold. */
export const MAX_INPUT_BYTES = 4 * 2 ** 20;

const { O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_APPEND, O_NOFOLLOW, O_NONBLOCK, O_NOCTTY, W_OK, X_OK } = constants;

/** Plain words for the errors a path gives (the runtimes word their messages differently). */
const REASONS: Record<string, string> = {
  ENOENT: "no such file or directory",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENOSPC: "no space left on device",
  EDQUOT: "disk quota exceeded",
  EROFS: "read-only file system",
  EISDIR: "is a directory",
  ENOTDIR: "a part of the path is not a directory",
  ELOOP: "too many symbolic links",
  ENAMETOOLONG: "name too long",
  EIO: "input/output error",
  EFBIG: "file too large",
};

/** Why a file operation failed, in plain words ("no space left on device"). */
export function reasonOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return (typeof code === "string" && REASONS[code]) || messageOf(err);
}

const codeOf = (err: unknown) => (err as { code?: unknown } | null)?.code;

/** What a file that is not a regular file is, for messages. */
function kindOf(st: Stats): string {
  if (st.isDirectory()) return "a directory";
  if (st.isSymbolicLink()) return "a symbolic link";
  if (st.isFIFO()) return "a FIFO";
  if (st.isSocket()) return "a socket";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  return "not a regular file";
}

function notAFile(typed: string, st: Stats): ConfigError {
  return new ConfigError(`${typed}: is ${kindOf(st)}, not a file`);
}

function linkRefused(typed: string, path: string): ConfigError {
  let target = "";
  try {
    target = ` (to ${readlinkSync(path)})`;
  } catch {}
  return new ConfigError(`${typed}: is a symbolic link${target}; s3backer writes this file, so give the file itself`);
}

function needsName(typed: string, path: string): void {
  if (path === "") throw new ConfigError(`${typed}: needs a file name`);
}

/** Before start-up: `path` is a file we may write (see the top of this file). */
export function checkWritableFile(typed: string, path: string): void {
  needsName(typed, path);
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch (err) {
    if (codeOf(err) !== "ENOENT") throw new ConfigError(`${typed}: ${reasonOf(err)}`);
    return checkNewFileDirectory(typed, path);
  }
  if (st.isSymbolicLink()) throw linkRefused(typed, path);
  if (!st.isFile()) throw notAFile(typed, st);
  try {
    accessSync(path, W_OK);
  } catch (err) {
    throw new ConfigError(`${typed}: ${reasonOf(err)}`);
  }
}

/** The directory a new file is to be made in exists, is a directory, and lets us in. */
function checkNewFileDirectory(typed: string, path: string): void {
  const dir = dirname(path);
  let st: Stats;
  try {
    st = statSync(dir);
  } catch (err) {
    throw new ConfigError(`${typed}: cannot be created: ${codeOf(err) === "ENOENT" ? `no directory ${dir}` : `${dir}: ${reasonOf(err)}`}`);
  }
  if (!st.isDirectory()) throw new ConfigError(`${typed}: cannot be created: ${dir} is not a directory`);
  try {
    accessSync(dir, W_OK | X_OK);
  } catch (err) {
    throw new ConfigError(`${typed}: cannot be created in ${dir}: ${reasonOf(err)}`);
  }
}

/**
 * Opens a file we write: "update" an existing one (undefined if there is none), "append" to one
 * made if missing, or "new": a file made afresh (whatever was at that name, if not a directory, is
 * removed first: a file left by a crash, or a link planted there). Never through a symbolic link;
 * anything but a regular file is refused. New files get `mode`.
 */
export function openWritableFile(typed: string, path: string, how: "update" | "append" | "new", mode = 0o600): number | undefined {
  needsName(typed, path);
  if (how === "new") removeStale(typed, path);
  const flags = O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | (how === "update" ? O_RDWR : how === "append" ? O_WRONLY | O_APPEND | O_CREAT : O_RDWR | O_CREAT | O_EXCL);
  let fd: number;
  try {
    fd = openSync(path, flags, mode);
  } catch (err) {
    if (how === "update" && codeOf(err) === "ENOENT") return undefined;
    if (codeOf(err) === "ELOOP") throw linkRefused(typed, path);
    throw new ConfigError(`${typed}: ${reasonOf(err)}`);
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw notAFile(typed, st);
  }
  return fd;
}

function removeStale(typed: string, path: string): void {
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (st.isDirectory()) throw notAFile(typed, st);
  unlinkSync(path);
}

/** Before start-up: `path` is a file we may read (see the top of this file). */
export function checkInputFile(typed: string, path: string): void {
  closeSync(openInput(typed, path)!.fd);
}

/** The text of a file we read, or undefined if there is none, or none we may read (when `mayBeMissing`). */
export function readInputFile(typed: string, path: string, mayBeMissing = false): string | undefined {
  const opened = openInput(typed, path, mayBeMissing);
  if (!opened) return undefined;
  try {
    // Read to the end, not to the size fstat gave: the file may have grown since (then the cap
    // still holds), and some files (in /proc) give none.
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const chunk = new Uint8Array(64 * 1024);
      const n = readSync(opened.fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      chunks.push(chunk.subarray(0, n));
      total += n;
      if (total > MAX_INPUT_BYTES) throw tooLarge(typed);
    }
    return new TextDecoder().decode(Buffer.concat(chunks));
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`${typed}: ${reasonOf(err)}`);
  } finally {
    closeSync(opened.fd);
  }
}

const tooLarge = (typed: string) => new ConfigError(`${typed}: larger than ${MAX_INPUT_BYTES / 2 ** 20} MiB, too large for a file of settings`);

function openInput(typed: string, path: string, mayBeMissing = false): { fd: number } | undefined {
  needsName(typed, path);
  let fd: number;
  try {
    fd = openSync(path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
  } catch (err) {
    // A default file (~/.s3backer_passwd, ~/.aws/config) out of reach counts as none, as upstream has it.
    if (mayBeMissing && ["ENOENT", "ENOTDIR", "EACCES"].includes(codeOf(err) as string)) return undefined;
    throw new ConfigError(`${typed}: ${codeOf(err) === "ENOENT" ? "no such file" : reasonOf(err)}`);
  }
  const st = fstatSync(fd);
  // /dev/null reads as an empty file, as scripts use it ("no settings").
  if (st.isCharacterDevice() && st.rdev === statSync("/dev/null").rdev) return { fd };
  if (!st.isFile() || st.size > MAX_INPUT_BYTES) {
    closeSync(fd);
    throw st.isFile() ? tooLarge(typed) : notAFile(typed, st);
  }
  return { fd };
}

/**
 * An image of a disk we read (--repair-from): a regular file or a block device, links followed,
 * opened read-only (O_NONBLOCK: a FIFO cannot hang us before it is refused). Its size in bytes
 * (a device's from /sys, as Linux gives it).
 */
export function openImage(typed: string, path: string): { fd: number; size: number } {
  needsName(typed, path);
  let fd: number;
  try {
    fd = openSync(path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
  } catch (err) {
    throw new ConfigError(`${typed}: ${codeOf(err) === "ENOENT" ? "no such file" : reasonOf(err)}`);
  }
  const st = fstatSync(fd);
  if (st.isFile()) return { fd, size: st.size };
  if (st.isBlockDevice()) {
    const major = (st.rdev >>> 8) & 0xfff; // glibc's gnu_dev_major/minor, for device numbers below 2^32
    const minor = (st.rdev & 0xff) | ((st.rdev >>> 12) & 0xfff00);
    try {
      return { fd, size: Number(readFileSync(`/sys/dev/block/${major}:${minor}/size`, "utf8").trim()) * 512 };
    } catch (err) {
      closeSync(fd);
      throw new ConfigError(`${typed}: the size of the device cannot be read (${reasonOf(err)})`);
    }
  }
  closeSync(fd);
  throw new ConfigError(`${typed}: is ${kindOf(st)}, not a file or a block device`);
}

/** Before start-up: `path` is an existing directory (links followed). */
export function checkDirectory(typed: string, path: string): void {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    throw new ConfigError(`${typed}: ${codeOf(err) === "ENOENT" ? "no such directory" : reasonOf(err)}`);
  }
  if (!st.isDirectory()) throw new ConfigError(`${typed}: is ${st.isFile() ? "a file" : kindOf(st)}, not a directory`);
}
