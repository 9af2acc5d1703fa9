/** The `-o` options that go to FUSE and the kernel mount, checked. */
import { ConfigError, UsageError } from "../errors.ts";
import type { FuseOptions } from "./settings.ts";

/** One full-size FUSE read ahead of a sequential reader. */
export const DEFAULT_KERNEL_READAHEAD = 1 << 20;

/** Options the kernel mount or mount.fuse may hand us that need no action here. */
const PASSTHROUGH_MOUNT_OPTIONS = new Set([
  "nodev", "nosuid", "noexec", "exec", "dev", "suid", "atime", "noatime", "relatime", "norelatime",
  "strictatime", "nodiratime", "diratime", "sync", "async", "dirsync", "lazytime", "nolazytime",
]);

const IGNORED_MOUNT_OPTIONS = new Set(["rw", "defaults", "auto", "noauto", "user", "nouser", "users", "_netdev", "nofail", "nonempty", "sync_read", "kernel_cache"]);

export function fuseOptions(options: string[], ids: { uid: number; gid: number }, readOnly: boolean, fsname: string): FuseOptions {
  const result: FuseOptions = {
    allowOther: false,
    defaultPermissions: false,
    uid: ids.uid,
    gid: ids.gid,
    maxReadahead: DEFAULT_KERNEL_READAHEAD,
    fsname,
    subtype: "s3backer",
    mountFlags: ["nodev", "nosuid"],
  };
  for (const opt of options) {
    const eq = opt.indexOf("=");
    const name = eq < 0 ? opt : opt.slice(0, eq);
    const value = eq < 0 ? undefined : opt.slice(eq + 1);
    const number = (max: number) => {
      if (value === undefined || !/^\d+$/.test(value) || Number(value) > max) {
        throw new ConfigError(`-o ${opt}: expected ${name}=<number up to ${max}>`);
      }
      return Number(value);
    };
    switch (name) {
      case "allow_other": result.allowOther = true; break;
      case "allow_root": throw new ConfigError("-o allow_root is not supported: use allow_other");
      case "default_permissions": result.defaultPermissions = true; break;
      case "uid": result.uid = number(2 ** 32 - 2); break;
      case "gid": result.gid = number(2 ** 32 - 2); break;
      case "max_readahead": result.maxReadahead = number(2 ** 31); break;
      case "fsname": case "subtype":
        if (!value) throw new ConfigError(`-o ${name} needs a value`);
        result[name] = value;
        break;
      case "ro":
        result.mountFlags.push("ro");
        break;
      default:
        if (PASSTHROUGH_MOUNT_OPTIONS.has(opt)) result.mountFlags.push(opt);
        else if (!IGNORED_MOUNT_OPTIONS.has(opt) && !opt.startsWith("x-")) {
          throw new UsageError(`unknown mount option '-o ${opt}'`);
        }
    }
  }
  if (readOnly && !result.mountFlags.includes("ro")) result.mountFlags.push("ro");
  return result;
}
