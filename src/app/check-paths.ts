/**
 * Before anything starts (and before the background process is made, so the user sees the line):
 * every path the command line names is what its flag may name (see util/flag-paths.ts). Only the
 * paths this run will use are checked: a --blockCacheFile with the cache off, or a --logFile in the
 * foreground, is never touched. The same rules hold again where each file is opened.
 */
import { closeSync, lstatSync, statSync } from "node:fs";
import { dirname } from "node:path";
import type { Config } from "../config/settings.ts";
import { MEMORY_BUCKET } from "../config/build-config.ts";
import { ConfigError } from "../errors.ts";
import { checkMountpoint } from "../fuse/mount.ts";
import { checkDirectory, checkInputFile, checkWritableFile, openImage } from "../util/flag-paths.ts";

/** The longest path a Unix socket address holds (sun_path, less its NUL). */
const MAX_SOCKET_PATH = 107;

export function checkPaths(config: Config): void {
  const typed = (name: string, value: string) => config.typed[name] ?? `--${name}=${value}`;
  const writes = (name: string, path: string | undefined) => path !== undefined && checkWritableFile(typed(name, path), path);
  const reads = (name: string, path: string | undefined) => path !== undefined && checkInputFile(typed(name, path), path);

  if (config.test && config.bucket !== MEMORY_BUCKET) checkDirectory(`test directory ${config.bucket}`, config.bucket);
  if (!config.test) {
    const s3 = config.s3;
    if (!s3.accessEC2IAM && !(s3.accessId && s3.accessKey)) reads("accessFile", s3.accessFile);
    reads("cacert", s3.cacert);
  }
  if (config.mode === "passwd" || config.mode === "scrub") reads("passwordFile", config.codec.encryption?.passwordFile);
  if (config.mode === "passwd") reads("newPasswordFile", config.newPasswordFile);
  const image = config.scrub.repairFrom;
  if (config.mode === "scrub" && image !== undefined) closeSync(openImage(typed("repair-from", image), image).fd);
  if (config.mode !== "mount") return;
  reads("passwordFile", config.codec.encryption?.passwordFile);
  if (config.cache.size > 0) writes("blockCacheFile", config.cache.file);
  if (!config.foreground) writes("logFile", config.logFile);
  writes("pidFile", config.pidFile);
  writes("statsFileMirror", config.statsFileMirror);
  const nbd = config.nbd;
  if (!nbd) checkMountpoint(config.mountpoint);
  else if (nbd.kind === "unix") checkSocketPath(`unix:${nbd.path}`, nbd.path);
  else if (nbd.kind === "device") checkDevice(nbd.path);
}

/** A socket to listen on: a new name in an existing directory, or a socket (a stale one is replaced). */
function checkSocketPath(typed: string, path: string): void {
  if (new TextEncoder().encode(path).length > MAX_SOCKET_PATH) throw new ConfigError(`${typed}: longer than ${MAX_SOCKET_PATH} bytes, the most a socket's path may be`);
  try {
    const st = lstatSync(path);
    if (!st.isSocket()) throw new ConfigError(`${typed}: something else is there (${st.isDirectory() ? "a directory" : st.isSymbolicLink() ? "a symbolic link" : "a file"}), not a socket`);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    checkDirectory(`${typed}: its directory ${dirname(path)}`, dirname(path));
  }
}

/** A kernel NBD device: a block device, if it is there (a missing one is explained where it is attached). */
function checkDevice(path: string): void {
  try {
    if (!statSync(path).isBlockDevice()) throw new ConfigError(`${path}: not a block device (expected /dev/nbdX)`);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
  }
}
