/** The settings of each layer from its flags: codec, consistency guard, block cache, S3. */
import { ConfigError, UsageError } from "../errors.ts";
import { flagDefault } from "../cli/flags.ts";
import { sizeFlag } from "./geometry.ts";
import { envRegion } from "../object/s3/credentials.ts";
import { CIPHERS, cipherByName, MAX_KEY_LENGTH } from "../object/codec/ciphers.ts";
import { type Compression, isCompression, LEVELS } from "../object/codec/compression.ts";
import { cipherOfLayer, DEFLATE, parseEncoding, ZSTD } from "../object/codec/content-encoding.ts";
import type { CacheSettings, CodecSettings, ConsistencySettings, EncryptionSettings, S3Settings } from "./settings.ts";

/** Compression and encryption as the original takes them: --encrypt implies --compress. */
export function codecSettings(flag: (name: string) => string | true | undefined, text: (name: string) => string | undefined): CodecSettings {
  const encrypt = flag("encrypt");
  let compression = compressionOf(flag("compress"), text("compress-level"));
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
    compression ??= { algorithm: DEFLATE, level: LEVELS[DEFLATE].default };
  }
  const defaultEncoding = text("defaultContentEncoding");
  if (defaultEncoding !== undefined) {
    const layers = parseEncoding(defaultEncoding);
    const bad = layers.find((l) => !isCompression(l) && cipherOfLayer(l) === undefined);
    if (layers.length === 0 || bad !== undefined) {
      throw new ConfigError(`--defaultContentEncoding=${defaultEncoding}: expected deflate, zstd and/or encrypt-CIPHER, e.g. 'deflate, encrypt-AES-128-CBC'`);
    }
  }
  return { compression, encryption, defaultEncoding };
}

/**
 * `--compress` (deflate), `--compress=deflate|zstd[:LEVEL]`, or 1.x's `--compress=LEVEL` (deflate);
 * `--compress-level` sets the level of the algorithm chosen.
 */
function compressionOf(compress: string | true | undefined, levelText: string | undefined): Compression | undefined {
  if (compress === undefined) {
    if (levelText !== undefined) throw new ConfigError("--compress-level needs --compress");
    return undefined;
  }
  let name = compress === true ? DEFLATE : compress.toLowerCase();
  let level = levelText;
  let typed = `--compress-level=${levelText}`;
  const colon = name.indexOf(":");
  if (/^-?\d+$/.test(name)) [name, level, typed] = [DEFLATE, name, `--compress=${compress}`];
  else if (colon >= 0) {
    if (levelText !== undefined) throw new UsageError("give the level in --compress=ALGORITHM:LEVEL or in --compress-level, not both");
    [name, level, typed] = [name.slice(0, colon), name.slice(colon + 1), `--compress=${compress}`];
  }
  if (name !== DEFLATE && name !== ZSTD) throw new ConfigError(`--compress=${compress}: expected deflate or zstd (optionally :LEVEL), or a deflate level`);
  const range = LEVELS[name];
  if (level === undefined) return { algorithm: name, level: range.default };
  const n = Number(level);
  if (!/^-?\d+$/.test(level) || n < range.min || n > range.max) {
    throw new ConfigError(`${typed}: expected a ${name} level from ${range.min} to ${range.max}`);
  }
  return { algorithm: name, level: n };
}

/** Defaults and rules of the original (Debian's 1.5.4): a 10 s memory of 10000 blocks, 500 ms apart. */
export function consistencySettings(text: (name: string) => string | undefined, readOnly: boolean): ConsistencySettings {
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
export function wholeNumber(text: (name: string) => string | undefined) {
  return (name: string, min = 0): number => {
    const v = text(name);
    if (v === undefined) return Number(flagDefault(name));
    if (!/^\d+$/.test(v) || Number(v) < min || !Number.isSafeInteger(Number(v))) {
      throw new ConfigError(`--${name}=${v}: expected a whole number${min ? ` of at least ${min}` : ""}`);
    }
    return Number(v);
  };
}

export function cacheSettings(text: (name: string) => string | undefined, on: (name: string) => boolean): CacheSettings {
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
  if (file === undefined && (on("blockCacheNoVerify") || on("blockCacheRecoverDirtyBlocks") || text("blockCacheMemory") !== undefined)) {
    throw new ConfigError("--blockCacheNoVerify, --blockCacheRecoverDirtyBlocks and --blockCacheMemory need --blockCacheFile");
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
    memoryBytes: sizeFlag("blockCacheMemory", text("blockCacheMemory") ?? flagDefault("blockCacheMemory")),
    noVerify: on("blockCacheNoVerify"),
    recoverDirty: on("blockCacheRecoverDirtyBlocks"),
    numProtected: count("blockCacheNumProtected"),
    fileAdvise: on("blockCacheFileAdvise"),
  };
}

const ACCESS_TYPES = ["private", "public-read", "public-read-write", "authenticated-read"];

export function s3Settings(
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
  const accessKeyEnv = text("accessKeyEnv");
  if (accessKeyEnv !== undefined && text("accessKey") !== undefined) throw new UsageError("give --accessKey or --accessKeyEnv, not both");
  if (accessKeyEnv !== undefined && !env[accessKeyEnv]) throw new ConfigError(`--accessKeyEnv=${accessKeyEnv}: that environment variable is not set`);
  const accessKey = accessKeyEnv !== undefined ? env[accessKeyEnv] : text("accessKey");
  if (on("vhost") && on("no-vhost")) throw new UsageError("give --vhost or --no-vhost, not both");
  const ipTos = text("ipTOS");
  if (ipTos !== undefined) {
    if (!/^(\d+|0x[0-9a-f]+|lowdelay|throughput|reliability|lowcost|mincost)$/i.test(ipTos) || Number(ipTos) > 255) {
      throw new ConfigError(`--ipTOS=${ipTos}: expected a number from 0 to 255, or lowdelay, throughput, reliability, lowcost`);
    }
    throw new ConfigError(`--ipTOS=${ipTos}: cannot be honoured here: the runtime's HTTP client (fetch) gives no access to its sockets' IP options`);
  }
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
    keepAlive: !on("noCurlCache"),
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
