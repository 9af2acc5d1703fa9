/**
 * The `-o` options that go to FUSE and the kernel mount, checked. Every option upstream's libfuse
 * (3.x) takes is applied here, or accepted with one warning line saying it has no effect; an
 * unknown one is refused, as libfuse refuses it.
 */
import { ConfigError, UsageError } from "../errors.ts";
import type { FuseOptions } from "../fuse/mount.ts";

/** One full-size FUSE read ahead of a sequential reader. */
export const DEFAULT_KERNEL_READAHEAD = 1 << 20;

/** Mount flags the kernel applies itself (passed to mount(2) or fusermount). */
const KERNEL_FLAGS = new Set([
  "nodev", "nosuid", "noexec", "exec", "dev", "suid", "atime", "noatime", "relatime", "norelatime",
  "strictatime", "nostrictatime", "nodiratime", "diratime", "sync", "async", "dirsync", "lazytime", "nolazytime",
]);

/** Options for mount(8) and fstab, which mount.fuse may hand over: nothing to do here. */
const MOUNT_COMMAND_OPTIONS = new Set(["rw", "defaults", "auto", "noauto", "user", "nouser", "users", "owner", "group", "_netdev", "nofail"]);

/**
 * libfuse's options (its session, high-level, mount and loop options, and FUSE 2's) that change
 * nothing here: this program answers the kernel itself, one event loop and one inode per file.
 */
const NO_EFFECT = new Set([
  "kernel_cache", "auto_cache", "noauto_cache", "no_rofd_flush", "ac_attr_timeout", "noforget", "remember", "modules",
  "subdir", "rellinks", "norellinks", "from_code", "to_code", "clone_fd", "max_idle_threads", "max_threads",
  "max_background", "congestion_threshold", "async_read", "atomic_o_trunc", "no_remote_lock", "no_remote_flock",
  "no_remote_posix_lock", "splice_write", "no_splice_write", "splice_move", "no_splice_move", "splice_read",
  "no_splice_read", "auto_inval_data", "no_auto_inval_data", "readdirplus", "async_dio", "no_async_dio",
  "writeback_cache", "no_writeback_cache", "time_gran", "blkdev", "blksize", "auto_unmount", "context", "fscontext",
  "defcontext", "rootcontext", "user", "nonempty", "use_ino", "readdir_ino", "direct_io", "hard_remove", "intr",
  "intr_signal", "nopath", "big_writes", "large_read", "parallel_direct_write", "fmask", "dmask", "symfollow", "nosymfollow",
]);

export function fuseOptions(
  options: readonly { option: string; typed: string }[],
  ids: { uid: number; gid: number },
  readOnly: boolean,
  fsname: string,
  warn: (message: string) => void,
): FuseOptions {
  const result: FuseOptions = {
    allowOther: false,
    allowRoot: false,
    defaultPermissions: false,
    uid: ids.uid,
    gid: ids.gid,
    maxReadahead: DEFAULT_KERNEL_READAHEAD,
    maxRead: undefined,
    maxWrite: undefined,
    entryTimeout: undefined,
    attrTimeout: undefined,
    negativeTimeout: 0,
    umask: undefined,
    syncRead: false,
    singleThreaded: false,
    fsname,
    subtype: "s3backer",
    mountFlags: ["nodev", "nosuid"],
  };
  const ignored: string[] = [];
  for (const { option: opt, typed } of options) {
    const eq = opt.indexOf("=");
    const name = eq < 0 ? opt : opt.slice(0, eq);
    const value = eq < 0 ? undefined : opt.slice(eq + 1);
    const number = (max: number) => {
      if (value === undefined || !/^\d+$/.test(value) || Number(value) > max) throw new ConfigError(`${typed}: expected ${name}=<number up to ${max}>`);
      return Number(value);
    };
    const seconds = () => {
      if (value === undefined || !/^\d+(\.\d+)?$/.test(value) || Number(value) > 2 ** 32) throw new ConfigError(`${typed}: expected ${name}=<seconds>`);
      return Number(value);
    };
    switch (name) {
      case "allow_other": result.allowOther = true; break;
      case "allow_root": result.allowRoot = true; break;
      case "default_permissions": result.defaultPermissions = true; break;
      case "uid": result.uid = number(2 ** 32 - 2); break;
      case "gid": result.gid = number(2 ** 32 - 2); break;
      case "max_readahead": result.maxReadahead = number(2 ** 31); break;
      case "max_read": result.maxRead = number(2 ** 32 - 1); break;
      case "max_write": result.maxWrite = number(2 ** 32 - 1); break;
      case "entry_timeout": result.entryTimeout = seconds(); break;
      case "attr_timeout": result.attrTimeout = seconds(); break;
      case "negative_timeout": result.negativeTimeout = seconds(); break;
      case "umask":
        if (value === undefined || !/^[0-7]{1,4}$/.test(value)) throw new ConfigError(`${typed}: expected umask=<octal mask such as 022>`);
        result.umask = parseInt(value, 8) & 0o777;
        break;
      case "sync_read": result.syncRead = true; break;
      case "fsname": case "subtype":
        if (!value) throw new ConfigError(`${typed} needs a value`);
        result[name] = value;
        break;
      case "ro":
        result.mountFlags.push("ro");
        break;
      default:
        if (KERNEL_FLAGS.has(opt)) result.mountFlags.push(opt);
        else if (NO_EFFECT.has(name)) ignored.push(opt);
        else if (!MOUNT_COMMAND_OPTIONS.has(opt) && !opt.startsWith("x-") && !opt.startsWith("comment=")) {
          throw new UsageError(`unknown mount option '${typed}'`);
        }
    }
  }
  if (result.allowOther && result.allowRoot) throw new UsageError("give -o allow_other or -o allow_root, not both");
  if (ignored.length > 0) warn(`-o ${ignored.join(",")}: accepted, no effect here (libfuse options this program has no use for)`);
  if (readOnly && !result.mountFlags.includes("ro")) result.mountFlags.push("ro");
  return result;
}
