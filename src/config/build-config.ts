/**
 * The command line's raw flag text in, a checked `Config` out (each layer's settings in
 * sections.ts, sizes in geometry.ts, FUSE options in fuse-options.ts). Every refusal is one
 * `UsageError` (exit 2) or `ConfigError` (exit 1) with a line a user can act on.
 */
import { resolve } from "node:path";
import { isBucketName } from "../util/bucket-name.ts";
import { ConfigError, UsageError } from "../errors.ts";
import { splitMountOptions, type ParsedArgs } from "../cli/parse.ts";
import { flagDefault } from "../cli/flags.ts";
import type { Config, Mode, NbdTarget } from "./settings.ts";
import { checkBlockSize, resolveGeometry, sizeFlag } from "./geometry.ts";
import { fuseOptions } from "./fuse-options.ts";
import { cacheSettings, codecSettings, consistencySettings, s3Settings, wholeNumber } from "./sections.ts";

export const MEMORY_BUCKET = ":memory:";

export function buildConfig(
  args: ParsedArgs,
  ids: { uid: number; gid: number } = currentIds(),
  env: Record<string, string | undefined> = process.env,
): Config {
  const fromOptions = splitMountOptions(args.mountOptions);
  // Flags given directly win over the same flag inside -o.
  const values = new Map([...fromOptions.flags, ...args.values]);
  const flag = (name: string) => values.get(name);
  const on = (name: string) => {
    const v = flag(name);
    if (v === undefined) return false;
    if (v === true) return true;
    throw new UsageError(`--${name} takes no value`);
  };
  const text = (name: string) => {
    const v = flag(name);
    if (v === true) throw new UsageError(`--${name} needs a value`);
    return v;
  };

  const mode: Mode = on("erase") ? "erase" : on("reset-mounted-flag") ? "reset-mounted-flag" : "mount";
  const readOnly = on("readOnly");
  if (mode !== "mount" && readOnly) throw new UsageError(`--${mode} cannot be combined with --readOnly`);

  const nbdMode = on("nbd");
  for (const nbdkit of ["nbd-flag", "nbd-param"]) {
    if (flag(nbdkit) !== undefined) throw new ConfigError(`--${nbdkit} passes options to nbdkit, which s3backer does not use: its NBD server is built in`);
  }
  if (nbdMode && mode !== "mount") throw new UsageError(`--${mode} cannot be combined with --nbd`);
  const wanted = mode === "mount" ? 2 : 1;
  const usage = mode !== "mount" ? "bucket[/prefix]" : nbdMode ? "bucket[/prefix] unix:PATH|tcp:HOST:PORT|/dev/nbdX" : "bucket[/prefix] mountpoint";
  if (args.positionals.length !== wanted) {
    throw new UsageError(
      args.positionals.length < wanted
        ? `missing argument: expected ${usage}`
        : `too many arguments: ${args.positionals.slice(wanted).join(" ")} (expected ${usage})`,
    );
  }
  const codec = codecSettings(flag, text);
  const test = on("test");
  if (test && (codec.compression !== undefined || codec.encryption)) {
    throw new ConfigError("--compress and --encrypt work on S3 disks, not in --test mode");
  }
  const testFaults = { errors: on("test-errors"), delays: on("test-delays"), discard: on("test-discard") };
  for (const [name, given] of Object.entries(testFaults)) {
    if (given && !test) throw new ConfigError(`--test-${name} needs --test`);
  }
  const sharedDisk = on("sharedDiskMode");
  const cached = SHARED_DISK_REFUSES.find((name) => values.has(name));
  if (sharedDisk && cached) throw new ConfigError(`--sharedDiskMode caches nothing: --${cached} cannot be combined with it`);
  const [bucketArg, second = ""] = args.positionals as [string, string?];
  const nbd = nbdMode ? nbdTarget(second) : undefined;
  const mountpoint = nbdMode ? "" : second;
  const { bucket, prefix } = splitBucket(bucketArg, text("prefix"), test);

  const blockSizeText = text("blockSize");
  const blockSize = blockSizeText === undefined ? undefined : sizeFlag("blockSize", blockSizeText);
  if (blockSize !== undefined) checkBlockSize(blockSize, `--blockSize=${blockSizeText}`);
  const sizeText = text("size");
  const fileSize = sizeText === undefined ? undefined : sizeFlag("size", sizeText);
  if (fileSize === 0) throw new ConfigError("--size must be greater than zero");
  if (test && fileSize === undefined && mode === "mount") {
    throw new ConfigError("--size is required: there is no size auto-detection in --test mode");
  }
  // Check what can be checked now; resolveGeometry repeats it once auto-detection has run.
  if (fileSize !== undefined) resolveGeometry({ blockSize, fileSize }, undefined, false);

  const filename = fileName("filename", text("filename") ?? flagDefault("filename"), false);
  const statsFilename = fileName("statsFilename", text("statsFilename") ?? flagDefault("statsFilename"), true);
  if (statsFilename === filename) throw new ConfigError(`--statsFilename and --filename are both '${filename}'`);

  const modeText = text("fileMode");
  let fileMode = readOnly ? 0o400 : 0o600;
  if (modeText !== undefined) {
    if (!/^[0-7]{1,4}$/.test(modeText)) throw new ConfigError(`--fileMode=${modeText}: expected octal permissions such as 0644`);
    fileMode = parseInt(modeText, 8);
  }

  const debug = on("debug");
  const format = (name: string): "text" | "json" => {
    const v = text(name) ?? flagDefault(name);
    if (v !== "text" && v !== "json") throw new ConfigError(`--${name}=${v}: expected text or json`);
    return v;
  };
  const s3 = s3Settings(text, on, env);
  // As the original: the mount table shows where the blocks are.
  const fsname = test ? `test:${bucket}${prefix ? `/${prefix}` : ""}` : `${s3.baseURL}${bucket}/${prefix}`;
  const fuse = fuseOptions(fromOptions.fuse, ids, readOnly, fsname);
  if (mode !== "mount" && on("listBlocks")) throw new UsageError(`--${mode} cannot be combined with --listBlocks`);
  return {
    mode,
    test,
    bucket,
    prefix,
    mountpoint,
    nbd,
    blockSize,
    fileSize,
    blockHashPrefix: on("blockHashPrefix"),
    filename,
    statsFilename,
    fileMode,
    readOnly: readOnly || fuse.mountFlags.includes("ro"),
    listBlocks: on("listBlocks"),
    sharedDisk,
    testFaults,
    force: on("force"),
    noAutoDetect: on("noAutoDetect"),
    directIO: on("directIO") || sharedDisk,
    foreground: on("foreground"),
    debug,
    quiet: on("quiet"),
    logFile: text("logFile"),
    logFormat: format("logFormat"),
    statsFormat: format("statsFormat"),
    pidFile: text("pidFile"),
    unmountTimeoutMs: wholeNumber(text)("unmountTimeout") * 1000,
    statsFileMirror: text("statsFileMirror"),
    statsFileMirrorIntervalMs: wholeNumber(text)("statsFileMirrorInterval", 1),
    fuse,
    s3,
    cache: sharedDisk ? { ...cacheSettings(text, on), size: 0 } : cacheSettings(text, on),
    // Discarded writes read back as zeros: there is nothing for the guard to check.
    consistency: sharedDisk || testFaults.discard ? NO_GUARD : consistencySettings(text, readOnly || fuse.mountFlags.includes("ro")),
    codec,
  };
}

const NO_GUARD = { md5CacheSize: 0, md5CacheTimeMs: 0, minWriteDelayMs: 0 };

/** What --sharedDiskMode turns off, so these may not be given with it (as in the original). */
const SHARED_DISK_REFUSES = [
  "listBlocks", "listBlocksThreads", "blockCacheSize", "blockCacheSync", "blockCacheThreads", "blockCacheTimeout",
  "blockCacheWriteDelay", "blockCacheMaxDirty", "blockCacheRecoverDirtyBlocks", "readAhead", "readAheadTrigger",
  "blockCacheNumProtected", "blockCacheFile", "blockCacheNoVerify", "blockCacheFileAdvise", "minWriteDelay",
  "md5CacheSize", "md5CacheTime",
];

/** unix:PATH, tcp:HOST:PORT (an IPv6 host in brackets) or a /dev/nbdX device. */
function nbdTarget(text: string): NbdTarget {
  if (text.startsWith("unix:") && text.length > 5) return { kind: "unix", path: resolve(text.slice(5)) };
  const tcp = /^tcp:(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  if (tcp && Number(tcp[3]) <= 65535) return { kind: "tcp", host: tcp[1] ?? tcp[2]!, port: Number(tcp[3]) };
  if (text.startsWith("/dev/")) return { kind: "device", path: text };
  throw new UsageError(`--nbd: '${text}' is not unix:PATH, tcp:HOST:PORT or /dev/nbdX`);
}

function currentIds() {
  return { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
}

/** `bucket/sub/dir` means prefix `sub/dir/`, as in the original; `--prefix` is added after it. */
function splitBucket(arg: string, prefixFlag: string | undefined, test: boolean) {
  if (arg === "") throw new UsageError("the bucket argument is empty");
  if (test) return { bucket: arg, prefix: prefixFlag ?? "" };
  const slash = arg.indexOf("/");
  const bucket = slash < 0 ? arg : arg.slice(0, slash);
  let prefix = slash < 0 ? "" : arg.slice(slash + 1);
  if (prefix !== "" && !prefix.endsWith("/")) prefix += "/";
  if (!isBucketName(bucket)) throw new ConfigError(`'${bucket}' is not a valid bucket name`);
  return { bucket, prefix: prefix + (prefixFlag ?? "") };
}

function fileName(flag: string, name: string, mayBeEmpty: boolean): string {
  if (name === "" && mayBeEmpty) return "";
  if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0")) {
    throw new ConfigError(`--${flag}=${name}: not a valid file name`);
  }
  if (new TextEncoder().encode(name).length > 255) throw new ConfigError(`--${flag}: name longer than 255 bytes`);
  return name;
}
