/**
 * The command line's raw flag text in, a checked `Config` out (each layer's settings in
 * sections.ts, sizes in geometry.ts, FUSE options in fuse-options.ts). Every refusal is one
 * `UsageError` (exit 2) or `ConfigError` (exit 1) with a line a user can act on.
 */
import { resolve } from "node:path";
import { isBucketName } from "../util/bucket-name.ts";
import { formatSize } from "../util/size.ts";
import { ConfigError, UsageError } from "../errors.ts";
import type { ParsedArgs } from "../cli/parse.ts";
import { flagDefault } from "../cli/flags.ts";
import { commandOfFlag, commandSpec, commandUsage } from "../cli/commands.ts";
import type { Config, Mode, NbdTarget } from "./settings.ts";
import { checkBlockSize, LARGE_BLOCK_SIZE, resolveGeometry } from "./geometry.ts";
import { fuseOptions } from "./fuse-options.ts";
import { FlagValues } from "./flag-values.ts";
import { metricsAddress } from "./metrics-address.ts";
import { cacheSettings, codecSettings, consistencySettings, s3Settings } from "./sections.ts";
import { nbdTlsSettings } from "./nbd-tls.ts";
import { reservedPart } from "../object/layers/reserved-names.ts";

export const MEMORY_BUCKET = ":memory:";

export function buildConfig(
  args: ParsedArgs,
  ids: { uid: number; gid: number } = currentIds(),
  env: Record<string, string | undefined> = process.env,
): Config {
  const f = new FlagValues(args.values);
  const on = (name: string) => f.on(name);
  const text = (name: string) => f.text(name);

  const command = args.command;
  const flagMode = on("erase") ? "erase" : on("reset-mounted-flag") ? "reset-mounted-flag" : undefined;
  if (command && flagMode) throw new UsageError(`'s3backer ${command}' cannot be combined with --${flagMode}`);
  const mode: Mode = command ?? flagMode ?? "mount";
  /** The mode as the user asked for it, for messages. */
  const asked = command ? `'s3backer ${command}'` : `--${mode}`;
  for (const name of args.values.keys()) {
    const only = commandOfFlag(name);
    if (only !== undefined && mode !== only) throw new UsageError(`${f.typed(name)} is for 's3backer ${only}'`);
  }
  const readOnly = on("readOnly");
  if (mode !== "mount" && readOnly) throw new UsageError(`${asked} cannot be combined with --readOnly`);

  const nbdMode = on("nbd");
  for (const nbdkit of ["nbd-flag", "nbd-param"]) {
    if (f.has(nbdkit)) throw f.fail(nbdkit, "passes options to nbdkit, which s3backer does not use: its NBD server is built in");
  }
  if (nbdMode && mode !== "mount") throw new UsageError(`${asked} cannot be combined with --nbd`);
  const wanted = command ? 1 + commandSpec(command).extra : mode === "mount" ? 2 : 1;
  const usage = command ? commandUsage(command) : mode !== "mount" ? "bucket[/prefix]" : nbdMode ? "bucket[/prefix] unix:PATH|tcp:HOST:PORT|/dev/nbdX" : "bucket[/prefix] mountpoint";
  if (args.positionals.length !== wanted) {
    throw new UsageError(
      args.positionals.length < wanted
        ? `missing argument: expected ${usage}`
        : `too many arguments: ${args.positionals.slice(wanted).join(" ")} (expected ${usage})`,
    );
  }
  const test = on("test");
  const s3Only = command && commandSpec(command).s3Only;
  if (test && s3Only) throw new ConfigError(`${asked} needs S3: ${s3Only}`);
  const codec = codecSettings(f, test, command === "passwd");
  const testFaults = { errors: on("test-errors"), delays: on("test-delays"), discard: on("test-discard") };
  for (const [name, given] of Object.entries(testFaults)) {
    if (given && !test) throw new ConfigError(`${f.typed(`test-${name}`)} needs --test`);
  }
  const sharedDisk = on("sharedDiskMode");
  const cached = SHARED_DISK_REFUSES.find((name) => f.has(name));
  if (sharedDisk && cached) throw new ConfigError(`--sharedDiskMode caches nothing: ${f.typed(cached)} cannot be combined with it`);
  const [bucketArg, second = ""] = args.positionals as [string, string?];
  const nbd = nbdMode ? nbdTarget(second) : undefined;
  const nbdTls = nbdTlsSettings(f, nbd);
  const mountpoint = mode === "mount" && !nbdMode ? second : "";
  const { bucket, prefix } = splitBucket(bucketArg, text("prefix"), test);
  const baseText = text("base");
  if (baseText !== undefined && (test || mode !== "mount")) throw f.fail("base", test ? "needs S3: layers are not kept in --test mode" : `is for mounting a new disk, not for ${asked}`);
  const base = baseText === undefined ? undefined : splitBucket(baseText, undefined, false);
  if (!test) checkDiskName(prefix, `'${bucketArg}'${f.has("prefix") ? ` with ${f.typed("prefix")}` : ""}`);
  if (base) checkDiskName(base.prefix, f.typed("base"));
  const blockSize = f.size("blockSize");
  if (blockSize !== undefined) checkBlockSize(blockSize, f.typed("blockSize"));
  if (blockSize !== undefined && blockSize > LARGE_BLOCK_SIZE) {
    f.warn(`${f.typed("blockSize")}: each block read, written or cached takes ${formatSize(blockSize)} of memory (the block cache holds up to --blockCacheSize of them)`);
  }
  const fileSize = f.size("size");
  if (test && fileSize === undefined && mode === "mount") {
    throw new ConfigError("--size is required: there is no size auto-detection in --test mode");
  }
  // Check what can be checked now; resolveGeometry repeats it once auto-detection has run.
  if (fileSize !== undefined) resolveGeometry({ blockSize, fileSize }, undefined, false);

  const filename = fileName(f, "filename", false);
  const statsFilename = fileName(f, "statsFilename", true);
  if (statsFilename === filename) throw new ConfigError(`--statsFilename and --filename are both '${filename}'`);

  const modeText = text("fileMode");
  let fileMode = readOnly ? 0o400 : 0o600;
  if (modeText !== undefined) {
    // Octal as upstream reads it (`644`, `0644`, `00644`), permission bits only.
    if (!/^0*[0-7]{1,4}$/.test(modeText)) throw f.fail("fileMode", "expected octal permissions such as 0644");
    fileMode = parseInt(modeText, 8);
  }

  const debug = on("debug");
  const format = (name: string): "text" | "json" => {
    const v = text(name) ?? flagDefault(name);
    if (v !== "text" && v !== "json") throw f.fail(name, "expected text or json");
    return v;
  };
  const s3 = s3Settings(f, bucket, env);
  // As the original: the mount table shows where the blocks are.
  const fsname = test ? `test:${bucket}${prefix ? `/${prefix}` : ""}` : `${s3.baseURL}${bucket}/${prefix}`;
  const fuse = fuseOptions(args.mountOptions, ids, readOnly, fsname, (w) => f.warn(w));
  fuse.singleThreaded = on("singleThreaded");
  if (nbdMode) {
    const unused = [...args.mountOptions.map((o) => o.typed), ...(f.has("singleThreaded") ? [f.typed("singleThreaded")] : [])];
    if (unused.length > 0) f.warn(`${unused.join(", ")}: no effect with --nbd (FUSE options)`);
  }
  if (mode !== "mount" && on("listBlocks")) throw new UsageError(`${asked} cannot be combined with --listBlocks`);
  if (mode !== "mount" && f.has("metrics")) throw new UsageError(`${asked} cannot be combined with --metrics`);
  const statsFileMirrorIntervalMs = f.count("statsFileMirrorInterval");
  if (statsFileMirrorIntervalMs < MIN_MIRROR_INTERVAL_MS && f.has("statsFileMirror")) {
    f.warn(`${f.typed("statsFileMirrorInterval")}: rewritten every ${MIN_MIRROR_INTERVAL_MS} ms, the shortest interval here`);
  }
  const cache = cacheSettings(f, sharedDisk);
  const consistency = sharedDisk || testFaults.discard ? NO_GUARD : consistencySettings(f, readOnly || fuse.mountFlags.includes("ro"));
  return {
    mode,
    typed: f.typedAll(),
    warnings: f.warnings,
    test,
    bucket,
    prefix,
    base,
    mountpoint,
    nbd,
    nbdTls,
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
    unmountTimeoutMs: f.count("unmountTimeout") * 1000,
    statsFileMirror: text("statsFileMirror"),
    statsFileMirrorIntervalMs: Math.max(MIN_MIRROR_INTERVAL_MS, statsFileMirrorIntervalMs),
    metrics: metricsAddress(f),
    fuse,
    s3,
    cache,
    // Discarded writes read back as zeros: there is nothing for the guard to check.
    consistency,
    codec,
    commandArgs: command ? args.positionals.slice(1) : [],
    newPasswordFile: text("newPasswordFile"),
    scrub: { repairFrom: text("repair-from"), rateBytes: f.size("scrub-rate") ?? f.sizeDefault("scrub-rate"), threads: f.count("scrub-threads") },
  };
}

/** --statsFileMirrorInterval below this (upstream's 0: rewritten without a pause) is raised to it. */
const MIN_MIRROR_INTERVAL_MS = 10;

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

/** A disk's prefix may not reach into another disk's own objects (object/layers/reserved-names.ts). */
function checkDiskName(prefix: string, typed: string): void {
  const part = reservedPart(prefix);
  if (part !== undefined) throw new ConfigError(`${typed}: '${part}' is a name s3backer keeps for a disk's own objects (its layers, manifest, flag, key or records), so it cannot be part of a disk's name`);
}

function fileName(f: FlagValues, flag: string, mayBeEmpty: boolean): string {
  const name = f.text(flag) ?? flagDefault(flag);
  if (name === "" && mayBeEmpty) return "";
  if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0")) {
    throw f.fail(flag, "not a valid file name");
  }
  if (new TextEncoder().encode(name).length > 255) throw f.fail(flag, "name longer than 255 bytes");
  return name;
}
