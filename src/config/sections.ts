/** The settings of each layer from its flags: codec, consistency guard, block cache, S3. */
import { ConfigError, UsageError } from "../errors.ts";
import { flagDefault } from "../cli/flags.ts";
import type { FlagValues } from "./flag-values.ts";
import { envRegion } from "../object/s3/credentials.ts";
import { CIPHERS, cipherByName, MAX_KEY_LENGTH } from "../store/codec/ciphers.ts";
import { type Compression, isCompression, LEVELS } from "../store/codec/compression.ts";
import { cipherOfLayer, DEFLATE, parseEncoding, ZSTD } from "../store/codec/content-encoding.ts";
import type { CacheSettings, CodecSettings, ConsistencySettings, EncryptionSettings, S3Settings } from "./settings.ts";

/** The typed forms of the flags among `names` that were given, joined for a warning. */
const given = (f: FlagValues, names: readonly string[]) => names.filter((n) => f.has(n)).map((n) => f.typed(n));

/**
 * Compression and encryption as the original takes them: --encrypt implies --compress.
 * `encryptImplied`: the command needs the password whether or not --encrypt was given ('passwd').
 */
export function codecSettings(f: FlagValues, test: boolean, encryptImplied = false): CodecSettings {
  const encrypt = f.raw("encrypt") ?? (encryptImplied || undefined);
  const keyWrap = f.on("keyWrap");
  let compression = compressionOf(f);
  const password = f.text("password");
  const passwordFile = f.text("passwordFile");
  let encryption: EncryptionSettings | undefined;
  if (encrypt === undefined) {
    if (keyWrap) throw new UsageError(`${f.typed("keyWrap")} needs --encrypt`);
    const stray = given(f, ["password", "passwordFile", "keyLength"]);
    if (stray.length > 0) f.warn(`${stray.join(", ")}: ignored without --encrypt`);
  } else {
    const cipher = encrypt === true ? CIPHERS[0]! : cipherByName(encrypt);
    if (!cipher) throw f.fail("encrypt", `supported ciphers are ${CIPHERS.map((c) => c.name).join(", ")}`);
    if (password !== undefined && passwordFile !== undefined) throw new UsageError("give --password or --passwordFile, not both");
    if (password === "") throw f.fail("password", "the password is empty");
    // 0 is the cipher's own length, as upstream's man page says.
    const keyLength = f.count("keyLength") || cipher.keyLength;
    if (keyLength < cipher.keyLength) throw f.fail("keyLength", `must be 0 or from ${cipher.keyLength} (the key of ${cipher.name}) to ${MAX_KEY_LENGTH}`);
    encryption = { cipher, keyLength, password, passwordFile, keyWrap };
    compression ??= { algorithm: DEFLATE, level: LEVELS[DEFLATE].default };
  }
  const defaultEncoding = f.text("defaultContentEncoding");
  if (defaultEncoding !== undefined) {
    const layers = parseEncoding(defaultEncoding);
    const bad = layers.find((l) => !isCompression(l) && cipherOfLayer(l) === undefined);
    if (layers.length === 0 || bad !== undefined) {
      throw f.fail("defaultContentEncoding", "expected deflate, zstd and/or encrypt-CIPHER, e.g. 'deflate, encrypt-AES-128-CBC'");
    }
  }
  if (test && (compression !== undefined || encryption !== undefined)) {
    // As upstream: a --test directory holds blocks as they are.
    f.warn(`${given(f, ["compress", "compress-level", "encrypt", "keyWrap"]).join(", ")}: no effect in --test mode (blocks are stored as they are)`);
    return { compression: undefined, encryption: undefined, defaultEncoding };
  }
  return { compression, encryption, defaultEncoding };
}

/**
 * `--compress` (deflate), `--compress=deflate|zstd[:LEVEL]`, or 1.x's `--compress=LEVEL` (deflate);
 * `--compress-level` sets the level of the algorithm chosen. As upstream, deflate also takes 0
 * (stored: here such a block is kept raw, which is smaller) and -1 (zlib's default), and zstd 0
 * (its default).
 */
function compressionOf(f: FlagValues): Compression | undefined {
  const compress = f.raw("compress");
  const levelText = f.text("compress-level");
  if (compress === undefined) {
    if (levelText !== undefined) throw new ConfigError(`${f.typed("compress-level")} needs --compress`);
    return undefined;
  }
  let name = compress === true ? DEFLATE : compress.toLowerCase();
  let level = levelText;
  let flag = "compress-level";
  const colon = name.indexOf(":");
  if (/^-?\d+$/.test(name)) [name, level, flag] = [DEFLATE, name, "compress"];
  else if (colon >= 0) {
    if (levelText !== undefined) throw new UsageError("give the level in --compress=ALGORITHM:LEVEL or in --compress-level, not both");
    [name, level, flag] = [name.slice(0, colon), name.slice(colon + 1), "compress"];
  }
  if (name !== DEFLATE && name !== ZSTD) throw f.fail("compress", "expected deflate or zstd (optionally :LEVEL), or a deflate level");
  const range = LEVELS[name];
  if (level === undefined) return { algorithm: name, level: range.default };
  const n = Number(level);
  const min = name === DEFLATE ? -1 : range.min;
  if (!/^-?\d+$/.test(level) || n < min || n > range.max) {
    throw f.fail(flag, `expected a ${name} level from ${min} to ${range.max}`);
  }
  return { algorithm: name, level: n === -1 || (n === 0 && name === ZSTD) ? range.default : n };
}

/** Defaults and rules of the original (Debian's 1.5.4): a 10 s memory of 10000 blocks, 500 ms apart. */
export function consistencySettings(f: FlagValues, readOnly: boolean): ConsistencySettings {
  const md5CacheSize = readOnly ? 0 : f.count("md5CacheSize");
  const md5CacheTimeMs = f.count("md5CacheTime");
  const minWriteDelayMs = f.count("minWriteDelay");
  if (md5CacheSize === 0 && minWriteDelayMs > 0 && !readOnly) throw new ConfigError(`${f.typed("minWriteDelay")} needs the MD5 cache (--md5CacheSize > 0)`);
  if (md5CacheTimeMs > 0 && md5CacheTimeMs < minWriteDelayMs) {
    throw new ConfigError(`${f.typed("md5CacheTime")} must be at least ${f.form("minWriteDelay")}`);
  }
  return { md5CacheSize, md5CacheTimeMs, minWriteDelayMs };
}

/** What the block cache does, so these have no effect when it is off (as upstream). */
const CACHE_FLAGS = [
  "blockCacheSync", "blockCacheThreads", "blockCacheWriteDelay", "blockCacheTimeout", "blockCacheMaxDirty", "readAhead",
  "readAheadTrigger", "blockCacheNumProtected", "blockCacheFile", "blockCacheNoVerify", "blockCacheFileAdvise", "blockCacheMemory",
];
/** What only a cache file does. */
const FILE_FLAGS = ["blockCacheNoVerify", "blockCacheFileAdvise", "blockCacheMemory"];

export function cacheSettings(f: FlagValues, sharedDisk: boolean): CacheSettings {
  const size = sharedDisk ? 0 : f.count("blockCacheSize");
  const writeDelayMs = f.count("blockCacheWriteDelay");
  const sync = f.on("blockCacheSync");
  if (sync && writeDelayMs !== 0) throw new ConfigError("--blockCacheSync needs --blockCacheWriteDelay=0");
  const file = f.text("blockCacheFile");
  const recoverDirty = f.on("blockCacheRecoverDirtyBlocks");
  if (recoverDirty && file === undefined) throw new ConfigError(`${f.typed("blockCacheRecoverDirtyBlocks")} needs --blockCacheFile`);
  const threads = f.count("blockCacheThreads");
  let maxDirty = f.count("blockCacheMaxDirty");
  const numProtected = f.count("blockCacheNumProtected");
  if (size === 0) {
    const unused = given(f, CACHE_FLAGS);
    if (unused.length > 0 && !sharedDisk) f.warn(`${unused.join(", ")}: no effect with the block cache off (--blockCacheSize=0)`);
  } else {
    if (threads === 0) throw f.fail("blockCacheThreads", "the block cache needs at least 1");
    if (maxDirty > size) {
      f.warn(`${f.typed("blockCacheMaxDirty")}: more than --blockCacheSize=${size}: at most ${size} blocks are dirty`);
      maxDirty = size;
    }
    if (numProtected > size) f.warn(`${f.typed("blockCacheNumProtected")}: more than --blockCacheSize=${size}: every cached block is protected`);
    const fileOnly = given(f, FILE_FLAGS);
    if (file === undefined && fileOnly.length > 0) f.warn(`${fileOnly.join(", ")}: no effect without --blockCacheFile`);
  }
  return {
    size,
    threads,
    writeDelayMs,
    timeoutMs: f.count("blockCacheTimeout"),
    maxDirty: maxDirty || size,
    sync,
    readAhead: f.count("readAhead"),
    // 0 starts read-ahead at the first read, as 1 does (upstream compares the reads made with it).
    readAheadTrigger: Math.max(1, f.count("readAheadTrigger")),
    file,
    memoryBytes: f.size("blockCacheMemory") ?? f.sizeDefault("blockCacheMemory"),
    noVerify: f.on("blockCacheNoVerify"),
    recoverDirty,
    numProtected,
    fileAdvise: f.on("blockCacheFileAdvise"),
  };
}

const ACCESS_TYPES = ["private", "public-read", "public-read-write", "authenticated-read"];
const AWS_HOST = /(^|\.)amazonaws\.com$/;

export function s3Settings(f: FlagValues, bucket: string, env: Record<string, string | undefined>): S3Settings {
  const authVersion = f.text("authVersion") ?? flagDefault("authVersion");
  if (authVersion !== "aws4") throw f.fail("authVersion", "only aws4 signing is supported");
  const accessType = f.text("accessType") ?? flagDefault("accessType");
  if (!ACCESS_TYPES.includes(accessType)) throw f.fail("accessType", `expected one of ${ACCESS_TYPES.join(", ")}`);
  const regionFlag = f.text("region");
  const region = regionFlag ?? envRegion(env) ?? flagDefault("region");
  if (!/^[a-z0-9-]+$/.test(region)) throw new ConfigError(`${regionFlag !== undefined ? f.typed("region") : `--region=${region}`}: not a region name`);

  const endpoint = f.text("baseURL") ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  let baseURL = endpoint ?? (region === "us-east-1" ? flagDefault("baseURL") : `https://s3.${region}.amazonaws.com/`);
  let parsed: URL;
  try {
    parsed = new URL(baseURL);
  } catch {
    throw new ConfigError(`${f.has("baseURL") ? f.typed("baseURL") : `--baseURL=${baseURL}`}: not a URL`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new ConfigError(`--baseURL=${baseURL}: must be http:// or https://`);
  if (f.on("ssl") && parsed.protocol !== "https:") throw new ConfigError(`--ssl needs an https:// base URL, not ${baseURL}`);
  if (!baseURL.endsWith("/")) baseURL += "/";

  const putHeaders: Record<string, string> = { "x-amz-acl": accessType };
  const storageClass = f.text("storageClass") ?? (f.on("rrs") ? "REDUCED_REDUNDANCY" : undefined);
  if (storageClass) putHeaders["x-amz-storage-class"] = storageClass;
  const sse = f.text("sse");
  if (sse !== undefined) {
    if (sse !== "AES256" && sse !== "aws:kms") throw f.fail("sse", "expected AES256 or aws:kms");
    putHeaders["x-amz-server-side-encryption"] = sse;
  }
  const sseKeyId = f.text("sse-key-id");
  if (sseKeyId !== undefined) {
    if (sse === "aws:kms") putHeaders["x-amz-server-side-encryption-aws-kms-key-id"] = sseKeyId;
    else f.warn(`${f.typed("sse-key-id")}: ignored without --sse=aws:kms`);
  }
  const accessId = f.text("accessId");
  const accessKeyEnv = f.text("accessKeyEnv");
  if (accessKeyEnv !== undefined && f.text("accessKey") !== undefined) throw new UsageError("give --accessKey or --accessKeyEnv, not both");
  if (accessKeyEnv !== undefined && !env[accessKeyEnv]) throw f.fail("accessKeyEnv", "that environment variable is not set");
  const accessKey = accessKeyEnv !== undefined ? env[accessKeyEnv] : f.text("accessKey");
  const ipTos = f.text("ipTOS");
  if (ipTos !== undefined) {
    if (!/^(\d+|0x[0-9a-f]+|lowdelay|throughput|reliability|lowcost|mincost)$/i.test(ipTos) || Number(ipTos) > 255) {
      throw f.fail("ipTOS", "expected a number from 0 to 255, or lowdelay, throughput, reliability, lowcost");
    }
    throw f.fail("ipTOS", "cannot be honoured here: the runtime's HTTP client (fetch) gives no access to its sockets' IP options");
  }
  const accessEC2IAM = f.text("accessEC2IAM");
  if (accessEC2IAM !== undefined && (accessId !== undefined || accessKey !== undefined)) {
    throw new UsageError("--accessEC2IAM cannot be combined with --accessId/--accessKey");
  }
  const timeoutSeconds = f.count("timeout");
  const initialRetryPauseMs = f.count("initialRetryPause");
  const maxRetryPauseMs = f.count("maxRetryPause");
  if (initialRetryPauseMs > maxRetryPauseMs) {
    throw new ConfigError(`${f.typed("maxRetryPause")} must be at least --initialRetryPause=${initialRetryPauseMs}`);
  }
  const listBlocksThreads = f.count("listBlocksThreads");
  if (listBlocksThreads === 0 && f.on("listBlocks")) throw f.fail("listBlocksThreads", "--listBlocks needs at least 1");
  return {
    baseURL,
    region,
    vhost: vhostOf(f, regionFlag !== undefined, endpoint, bucket),
    insecure: f.on("insecure"),
    cacert: f.text("cacert"),
    accessId,
    accessKey,
    accessFile: f.text("accessFile"),
    accessEC2IAM,
    keepAlive: !f.on("noCurlCache"),
    putHeaders,
    timeoutMs: timeoutSeconds * 1000,
    initialRetryPauseMs,
    maxRetryPauseMs,
    maxUploadBps: f.size("maxUploadSpeed") ?? 0,
    maxDownloadBps: f.size("maxDownloadSpeed") ?? 0,
    debugHttp: f.on("debug-http"),
    // 0 is accepted without --listBlocks, where nothing lists (--erase still lists, one at a time).
    listBlocksThreads: Math.max(1, listBlocksThreads),
  };
}

/**
 * Virtual-hosted URLs (bucket.host/key) or path-style (host/bucket/key). As upstream: --vhost and
 * --no-vhost, the later one winning; else --region turns virtual-hosted URLs on, which is what AWS
 * asks for today (path-style is deprecated there). Two exceptions, each with a warning, since
 * upstream's URL would not work or reach the wrong place: a bucket name with dots (its name does
 * not match AWS's TLS certificate), and a --baseURL or AWS_ENDPOINT_URL that is not AWS's (most
 * other servers expect path-style, and ours always sent it there).
 */
function vhostOf(f: FlagValues, regionGiven: boolean, endpoint: string | undefined, bucket: string): boolean {
  const on = f.on("vhost");
  const off = f.on("no-vhost");
  if (on || off) return on && (!off || f.order("vhost") > f.order("no-vhost"));
  if (!regionGiven) return false;
  const why = endpoint !== undefined && !AWS_HOST.test(new URL(endpoint).hostname) ? `a server of your own (${endpoint}) usually wants them` : bucket.includes(".") ? `the bucket name has dots, which AWS's TLS certificate does not cover` : undefined;
  if (why === undefined) return true;
  f.warn(`${f.typed("region")}: path-style URLs (host/bucket/key), since ${why}; upstream would use virtual-hosted ones here (--vhost), --no-vhost silences this`);
  return false;
}
