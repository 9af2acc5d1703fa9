/** The checked settings a command line becomes (build-config.ts makes them): types only. */
import { type CipherSpec } from "../store/codec/ciphers.ts";
import type { Compression } from "../store/codec/compression.ts";
import type { TestFaults } from "../object/test-faults.ts";
import type { FuseOptions } from "../fuse/mount.ts";
import type { NbdTls } from "../nbd/server.ts";
import type { Command } from "../cli/commands.ts";

/** What a run does: mount (or serve over NBD), or one of the maintenance flags or commands. */
export type Mode = "mount" | "erase" | "reset-mounted-flag" | Command;


export interface Config {
  mode: Mode;
  /** Each flag given, as the user typed it and where (`-o size=1G`, `conf:3: --size=1G`), for messages. */
  typed: Readonly<Record<string, string>>;
  /** What was accepted but is ignored or clamped, one line each, for the user to see before start-up. */
  warnings: string[];
  /** Local test mode: blocks are files in `bucket` (a directory), or RAM for ":memory:". */
  test: boolean;
  bucket: string;
  prefix: string;
  /** --base: the disk a new disk reads through (its prefix may end in @SNAPSHOT). */
  base: { bucket: string; prefix: string } | undefined;
  /** The mount point; empty with --nbd. */
  mountpoint: string;
  /** With --nbd: where the disk is served. */
  nbd: NbdTarget | undefined;
  /** With --nbd and --nbd-tls-*: TLS offered or required, with its credentials read and checked. */
  nbdTls: NbdTls | undefined;
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
  /** --sharedDiskMode: no caching anywhere, and other shared mounts admitted. */
  sharedDisk: boolean;
  /** --test-errors, --test-delays, --test-discard (only with --test). */
  testFaults: TestFaults;
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
  /** --unmountTimeout: how long unmount keeps trying to store what is left (0: until stored). */
  unmountTimeoutMs: number;
  statsFileMirror: string | undefined;
  statsFileMirrorIntervalMs: number;
  /** --metrics: where Prometheus metrics are served. */
  metrics: ListenAddress | undefined;
  fuse: FuseOptions;
  s3: S3Settings;
  cache: CacheSettings;
  consistency: ConsistencySettings;
  codec: CodecSettings;
  /** A command's arguments after its disk (snapshot's name, resize's size). */
  commandArgs: string[];
  /** For 'passwd': --newPasswordFile. */
  newPasswordFile: string | undefined;
  /** For 'scrub'. */
  scrub: ScrubSettings;
}

export interface ScrubSettings {
  /** --repair-from: an image of the disk to rewrite damaged blocks from. */
  repairFrom: string | undefined;
  /** Bytes of stored blocks read per second at most; 0: no limit. */
  rateBytes: number;
  threads: number;
}


/** A TCP address to listen on (port 0: any free port). */
export interface ListenAddress {
  host: string;
  port: number;
}

/** An NBD socket to serve on, or a kernel NBD device to attach through nbd-client. */
export type NbdTarget = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number } | { kind: "device"; path: string };

export interface CodecSettings {
  /** How new blocks are compressed; undefined: not at all (reading still decompresses). */
  compression: Compression | undefined;
  encryption: EncryptionSettings | undefined;
  /** Content-Encoding assumed when a server drops the header. */
  defaultEncoding: string | undefined;
}

export interface EncryptionSettings {
  cipher: CipherSpec;
  keyLength: number;
  /** From --password; else --passwordFile, else a prompt (see app/password.ts). */
  password: string | undefined;
  passwordFile: string | undefined;
  /** --keyWrap: a new disk gets a random data key, wrapped by the password (app/disk-key.ts). */
  keyWrap: boolean;
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
  /** With a file: bytes of block data held in memory too. */
  memoryBytes: number;
  noVerify: boolean;
  recoverDirty: boolean;
  /** The first blocks of the disk, evicted only when no other block can be. */
  numProtected: number;
  /** posix_fadvise(DONTNEED) on the cache file's pages after each write. */
  fileAdvise: boolean;
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
  /** False with --noCurlCache: a new connection for every request. */
  keepAlive: boolean;
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
