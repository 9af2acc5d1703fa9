/**
 * All validation of the command line in one place: raw flag text in, a checked `Config` out.
 * Every refusal is one `UsageError` (exit 2) or `ConfigError` (exit 1) with a line a user can act on.
 */
import { resolve } from "node:path";
import { isBucketName } from "./util/bucket-name.ts";
import { ConfigError, UsageError } from "./errors.ts";
import { splitMountOptions, type ParsedArgs } from "./cli/parse.ts";
import { flagDefault } from "./cli/flags.ts";
import { formatSize, parseSize } from "./util/size.ts";
import { envRegion } from "./object/s3/credentials.ts";
import { CIPHERS, cipherByName, MAX_KEY_LENGTH, type CipherSpec } from "./object/codec/ciphers.ts";
import { DEFAULT_LEVEL, isCompression } from "./object/codec/compression.ts";
import { cipherOfLayer, parseEncoding } from "./object/codec/content-encoding.ts";

export type Mode = "mount" | "erase" | "reset-mounted-flag";

export interface FuseOptions {
  allowOther: boolean;
  defaultPermissions: boolean;
  uid: number;
  gid: number;
  /** Kernel read-ahead in bytes (the original's 0 would turn buffered reads into 4 KiB requests). */
  maxReadahead: number;
  fsname: string;
  subtype: string;
  /** Options passed to the kernel's mount unchanged (nodev, noexec, ...). */
  mountFlags: string[];
}

export interface Config {
  mode: Mode;
  /** Local test mode: blocks are files in `bucket` (a directory), or RAM for ":memory:". */
  test: boolean;
  bucket: string;
  prefix: string;
  /** The mount point; empty with --nbd. */
  mountpoint: string;
  /** With --nbd: where the disk is served. */
  nbd: NbdTarget | undefined;
  /** Sizes from the flags; the disk's metadata may supply them (see resolveGeometry). */
  blockSize: number | undefined;
  fileSize: number | undefined;
  blockHashPrefix: boolean;
  filename: string;
  /** Empty: no stats file. */
  statsFilename: string;
  fileMode: number;
  readOnly: boolean;
  listBlocks: boolean;
  force: boolean;
  noAutoDetect: boolean;
  directIO: boolean;
  foreground: boolean;
  debug: boolean;
  quiet: boolean;
  logFile: string | undefined;
  logFormat: "text" | "json";
  statsFormat: "text" | "json";
  pidFile: string | undefined;
  statsFileMirror: string | undefined;
  statsFileMirrorIntervalMs: number;
  fuse: FuseOptions;
  s3: S3Settings;
  cache: CacheSettings;
  consistency: ConsistencySettings;
  codec: CodecSettings;
}

/** An NBD socket to serve on, or a kernel NBD device to attach through nbd-client. */
export type NbdTarget = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number } | { kind: "device"; path: string };

export interface CodecSettings {
  /** Deflate level for new blocks; undefined: no compression (reading still inflates). */
  compressLevel: number | undefined;
  encryption: EncryptionSettings | undefined;
  /** Content-Encoding assumed when a server drops the header. */
  defaultEncoding: string | undefined;
}

export interface EncryptionSettings {
  cipher: CipherSpec;
  keyLength: number;
  /** From --password; else --passwordFile, else a prompt (see cli/password.ts). */
  password: string | undefined;
  passwordFile: string | undefined;
}

export interface ConsistencySettings {
  /** Blocks remembered; 0: no guard. */
  md5CacheSize: number;
  /** 0: forever. */
  md5CacheTimeMs: number;
  minWriteDelayMs: number;
}

export interface CacheSettings {
  /** Blocks held; 0: no block cache. */
  size: number;
  threads: number;
  writeDelayMs: number;
  timeoutMs: number;
  maxDirty: number;
  sync: boolean;
  readAhead: number;
  readAheadTrigger: number;
  /** Keep the cache in this file (survives restarts). */
  file: string | undefined;
  noVerify: boolean;
  recoverDirty: boolean;
}

export interface S3Settings {
  baseURL: string;
  region: string;
  vhost: boolean;
  insecure: boolean;
  cacert: string | undefined;
  accessId: string | undefined;
  accessKey: string | undefined;
  accessFile: string | undefined;
  accessEC2IAM: string | undefined;
  /** Headers of every block PUT: ACL, storage class, server-side encryption. */
  putHeaders: Record<string, string>;
  timeoutMs: number;
  initialRetryPauseMs: number;
  maxRetryPauseMs: number;
  maxUploadBps: number;
  maxDownloadBps: number;
  debugHttp: boolean;
  listBlocksThreads: number;
}

export interface Geometry {
  blockSize: number;
  fileSize: number;
  numBlocks: number;
}

export const MIN_BLOCK_SIZE = 512;
export const MAX_BLOCK_SIZE = 64 * 2 ** 20;
/** Block names are 8 hex digits, as in the original. */
export const MAX_BLOCKS = 2 ** 32;
export const MEMORY_BUCKET = ":memory:";
export const DEFAULT_BLOCK_SIZE = parseSize(flagDefault("blockSize"))!;
/** One full-size FUSE read ahead of a sequential reader. */
export const DEFAULT_KERNEL_READAHEAD = 1 << 20;

/** Options the kernel mount or mount.fuse may hand us that need no action here. */
const PASSTHROUGH_MOUNT_OPTIONS = new Set([
  "nodev", "nosuid", "noexec", "exec", "dev", "suid", "atime", "noatime", "relatime", "norelatime",
  "strictatime", "nodiratime", "diratime", "sync", "async", "dirsync", "lazytime", "nolazytime",
]);
const IGNORED_MOUNT_OPTIONS = new Set(["rw", "defaults", "auto", "noauto", "user", "nouser", "users", "_netdev", "nofail", "nonempty", "sync_read", "kernel_cache"]);

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
  if (test && (codec.compressLevel !== undefined || codec.encryption)) {
    throw new ConfigError("--compress and --encrypt work on S3 disks, not in --test mode");
  }
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
    force: on("force"),
    noAutoDetect: on("noAutoDetect"),
    directIO: on("directIO"),
    foreground: on("foreground"),
    debug,
    quiet: on("quiet"),
    logFile: text("logFile"),
    logFormat: format("logFormat"),
    statsFormat: format("statsFormat"),
    pidFile: text("pidFile"),
    statsFileMirror: text("statsFileMirror"),
    statsFileMirrorIntervalMs: wholeNumber(text)("statsFileMirrorInterval", 1),
    fuse,
    s3,
    cache: cacheSettings(text, on),
    consistency: consistencySettings(text, readOnly || fuse.mountFlags.includes("ro")),
    codec,
  };
}

/** Compression and encryption as the original takes them: --encrypt implies --compress. */
function codecSettings(flag: (name: string) => string | true | undefined, text: (name: string) => string | undefined): CodecSettings {
  const compress = flag("compress");
  const encrypt = flag("encrypt");
  let compressLevel: number | undefined;
  if (compress === true || compress === "deflate") compressLevel = DEFAULT_LEVEL;
  else if (compress !== undefined) {
    if (!/^[1-9]$/.test(compress)) throw new ConfigError(`--compress=${compress}: expected a level from 1 (fast) to 9 (small)`);
    compressLevel = Number(compress);
  }
  const password = text("password");
  const passwordFile = text("passwordFile");
  const keyLengthText = text("keyLength");
  let encryption: EncryptionSettings | undefined;
  if (encrypt === undefined) {
    for (const [name, v] of [["password", password], ["passwordFile", passwordFile], ["keyLength", keyLengthText]] as const) {
      if (v !== undefined) throw new ConfigError(`--${name} needs --encrypt`);
    }
  } else {
    const cipher = encrypt === true ? CIPHERS[0]! : cipherByName(encrypt);
    if (!cipher) throw new ConfigError(`--encrypt=${encrypt}: supported ciphers are ${CIPHERS.map((c) => c.name).join(", ")}`);
    if (password !== undefined && passwordFile !== undefined) throw new UsageError("give --password or --passwordFile, not both");
    if (password === "") throw new ConfigError("--password is empty");
    let keyLength = cipher.keyLength;
    if (keyLengthText !== undefined) {
      keyLength = Number(keyLengthText);
      if (!/^\d+$/.test(keyLengthText) || keyLength < cipher.keyLength || keyLength > MAX_KEY_LENGTH) {
        throw new ConfigError(`--keyLength=${keyLengthText}: must be from ${cipher.keyLength} (the key of ${cipher.name}) to ${MAX_KEY_LENGTH}`);
      }
    }
    encryption = { cipher, keyLength, password, passwordFile };
    compressLevel ??= DEFAULT_LEVEL;
  }
  const defaultEncoding = text("defaultContentEncoding");
  if (defaultEncoding !== undefined) {
    const layers = parseEncoding(defaultEncoding);
    const bad = layers.find((l) => !isCompression(l) && cipherOfLayer(l) === undefined);
    if (layers.length === 0 || bad !== undefined) {
      throw new ConfigError(`--defaultContentEncoding=${defaultEncoding}: expected deflate, zstd and/or encrypt-CIPHER, e.g. 'deflate, encrypt-AES-128-CBC'`);
    }
  }
  return { compressLevel, encryption, defaultEncoding };
}

/** Defaults and rules of the original (Debian's 1.5.4): a 10 s memory of 10000 blocks, 500 ms apart. */
function consistencySettings(text: (name: string) => string | undefined, readOnly: boolean): ConsistencySettings {
  const count = wholeNumber(text);
  const md5CacheSize = readOnly ? 0 : count("md5CacheSize");
  const md5CacheTimeMs = count("md5CacheTime");
  const minWriteDelayMs = count("minWriteDelay");
  if (md5CacheSize === 0 && minWriteDelayMs > 0 && !readOnly) throw new ConfigError("--minWriteDelay needs the MD5 cache (--md5CacheSize > 0)");
  if (md5CacheTimeMs > 0 && md5CacheTimeMs < minWriteDelayMs) {
    throw new ConfigError(`--md5CacheTime=${md5CacheTimeMs} must be at least --minWriteDelay=${minWriteDelayMs}`);
  }
  return { md5CacheSize, md5CacheTimeMs, minWriteDelayMs };
}

/** A whole-number flag, its default from the flag table. */
function wholeNumber(text: (name: string) => string | undefined) {
  return (name: string, min = 0): number => {
    const v = text(name);
    if (v === undefined) return Number(flagDefault(name));
    if (!/^\d+$/.test(v) || Number(v) < min || !Number.isSafeInteger(Number(v))) {
      throw new ConfigError(`--${name}=${v}: expected a whole number${min ? ` of at least ${min}` : ""}`);
    }
    return Number(v);
  };
}

function cacheSettings(text: (name: string) => string | undefined, on: (name: string) => boolean): CacheSettings {
  const count = wholeNumber(text);
  const size = count("blockCacheSize");
  const writeDelayMs = count("blockCacheWriteDelay");
  const sync = on("blockCacheSync");
  if (sync && writeDelayMs !== 0) throw new ConfigError("--blockCacheSync needs --blockCacheWriteDelay=0");
  const maxDirty = count("blockCacheMaxDirty");
  if (maxDirty > size) throw new ConfigError(`--blockCacheMaxDirty=${maxDirty} is larger than --blockCacheSize=${size}`);
  const file = text("blockCacheFile");
  if (size === 0 && (sync || file !== undefined || text("readAhead") !== undefined)) {
    throw new ConfigError("--blockCacheSync, --blockCacheFile and --readAhead need the block cache (--blockCacheSize > 0)");
  }
  if (file === undefined && (on("blockCacheNoVerify") || on("blockCacheRecoverDirtyBlocks"))) {
    throw new ConfigError("--blockCacheNoVerify and --blockCacheRecoverDirtyBlocks need --blockCacheFile");
  }
  return {
    size,
    threads: count("blockCacheThreads", 1),
    writeDelayMs,
    timeoutMs: count("blockCacheTimeout"),
    maxDirty: maxDirty || size,
    sync,
    readAhead: count("readAhead"),
    readAheadTrigger: count("readAheadTrigger", 1),
    file,
    noVerify: on("blockCacheNoVerify"),
    recoverDirty: on("blockCacheRecoverDirtyBlocks"),
  };
}

/** unix:PATH, tcp:HOST:PORT (an IPv6 host in brackets) or a /dev/nbdX device. */
function nbdTarget(text: string): NbdTarget {
  if (text.startsWith("unix:") && text.length > 5) return { kind: "unix", path: resolve(text.slice(5)) };
  const tcp = /^tcp:(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  if (tcp && Number(tcp[3]) <= 65535) return { kind: "tcp", host: tcp[1] ?? tcp[2]!, port: Number(tcp[3]) };
  if (text.startsWith("/dev/")) return { kind: "device", path: text };
  throw new UsageError(`--nbd: '${text}' is not unix:PATH, tcp:HOST:PORT or /dev/nbdX`);
}

function checkBlockSize(blockSize: number, what: string): void {
  if (blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) {
    throw new ConfigError(`${what}: must be a power of two from ${formatSize(MIN_BLOCK_SIZE)} to ${formatSize(MAX_BLOCK_SIZE)}`);
  }
}

/**
 * The disk's block and file size: from the flags, else from what the disk's metadata says.
 * Flags that disagree with the metadata are refused unless --force.
 */
export function resolveGeometry(
  flags: { blockSize: number | undefined; fileSize: number | undefined },
  detected: { blockSize: number; fileSize: number } | undefined,
  force: boolean,
): Geometry {
  if (detected) {
    checkBlockSize(detected.blockSize, "the disk's metadata block size");
    for (const [name, mine, theirs] of [["--blockSize", flags.blockSize, detected.blockSize], ["--size", flags.fileSize, detected.fileSize]] as const) {
      if (mine !== undefined && mine !== theirs && !force) {
        throw new ConfigError(`${name}=${formatSize(mine)} differs from the disk's own ${formatSize(theirs)}; use --force to override (and risk misreading the disk)`);
      }
    }
  }
  const blockSize = flags.blockSize ?? detected?.blockSize ?? DEFAULT_BLOCK_SIZE;
  const fileSize = flags.fileSize ?? detected?.fileSize;
  if (fileSize === undefined) throw new ConfigError("--size is required: no existing disk was found to take it from");
  if (fileSize % blockSize !== 0) {
    throw new ConfigError(`--size=${formatSize(fileSize)} is not a multiple of the block size (${formatSize(blockSize)})`);
  }
  const numBlocks = fileSize / blockSize;
  if (numBlocks > MAX_BLOCKS) {
    throw new ConfigError(
      `--size=${formatSize(fileSize)} needs ${numBlocks} blocks of ${formatSize(blockSize)}; at most ${MAX_BLOCKS} fit the block names: use a larger --blockSize`,
    );
  }
  return { blockSize, fileSize, numBlocks };
}

const ACCESS_TYPES = ["private", "public-read", "public-read-write", "authenticated-read"];

function s3Settings(
  text: (name: string) => string | undefined,
  on: (name: string) => boolean,
  env: Record<string, string | undefined>,
): S3Settings {
  const count = wholeNumber(text);
  const authVersion = text("authVersion") ?? flagDefault("authVersion");
  if (authVersion !== "aws4") throw new ConfigError(`--authVersion=${authVersion}: only aws4 signing is supported`);
  const accessType = text("accessType") ?? flagDefault("accessType");
  if (!ACCESS_TYPES.includes(accessType)) throw new ConfigError(`--accessType=${accessType}: expected one of ${ACCESS_TYPES.join(", ")}`);
  const region = text("region") ?? envRegion(env) ?? flagDefault("region");
  if (!/^[a-z0-9-]+$/.test(region)) throw new ConfigError(`--region=${region}: not a region name`);

  let baseURL = text("baseURL") ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL ?? (region === "us-east-1" ? flagDefault("baseURL") : `https://s3.${region}.amazonaws.com/`);
  let parsed: URL;
  try {
    parsed = new URL(baseURL);
  } catch {
    throw new ConfigError(`--baseURL=${baseURL}: not a URL`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new ConfigError(`--baseURL=${baseURL}: must be http:// or https://`);
  if (on("ssl") && parsed.protocol !== "https:") throw new ConfigError(`--ssl needs an https:// base URL, not ${baseURL}`);
  if (!baseURL.endsWith("/")) baseURL += "/";

  const putHeaders: Record<string, string> = { "x-amz-acl": accessType };
  const storageClass = text("storageClass") ?? (on("rrs") ? "REDUCED_REDUNDANCY" : undefined);
  if (storageClass) putHeaders["x-amz-storage-class"] = storageClass;
  const sse = text("sse");
  if (sse !== undefined) {
    if (sse !== "AES256" && sse !== "aws:kms") throw new ConfigError(`--sse=${sse}: expected AES256 or aws:kms`);
    putHeaders["x-amz-server-side-encryption"] = sse;
  }
  const sseKeyId = text("sse-key-id");
  if (sseKeyId !== undefined) {
    if (sse !== "aws:kms") throw new ConfigError("--sse-key-id needs --sse=aws:kms");
    putHeaders["x-amz-server-side-encryption-aws-kms-key-id"] = sseKeyId;
  }
  const accessId = text("accessId");
  const accessKey = text("accessKey");
  const accessEC2IAM = text("accessEC2IAM");
  if (accessEC2IAM !== undefined && (accessId !== undefined || accessKey !== undefined)) {
    throw new UsageError("--accessEC2IAM cannot be combined with --accessId/--accessKey");
  }
  return {
    baseURL,
    region,
    vhost: on("vhost"),
    insecure: on("insecure"),
    cacert: text("cacert"),
    accessId,
    accessKey,
    accessFile: text("accessFile"),
    accessEC2IAM,
    putHeaders,
    timeoutMs: count("timeout", 1) * 1000,
    initialRetryPauseMs: count("initialRetryPause", 1),
    maxRetryPauseMs: count("maxRetryPause"),
    maxUploadBps: count("maxUploadSpeed"),
    maxDownloadBps: count("maxDownloadSpeed"),
    debugHttp: on("debug-http"),
    listBlocksThreads: count("listBlocksThreads", 1),
  };
}

function currentIds() {
  return { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
}

function sizeFlag(name: string, value: string): number {
  const size = parseSize(value);
  if (size === undefined) throw new ConfigError(`--${name}=${value}: not a size (examples: 4096, 4k, 1M, 10G, 1T)`);
  return size;
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

function fuseOptions(options: string[], ids: { uid: number; gid: number }, readOnly: boolean, fsname: string): FuseOptions {
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
