/**
 * What the layer commands (snapshot, flatten, info, resize) share: the mount's flags (S3
 * connection, encryption, --blockHashPrefix), their disk and its manifest, the mount that has the
 * disk on this host (reached through its control socket) or the line saying it is mounted
 * elsewhere, and the disk's mounted flag, which a command that changes the disk holds meanwhile so
 * that no mount or other command starts under it.
 */
import { hostname } from "node:os";
import type { Config } from "../../config/settings.ts";
import { ConfigError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import { blockName } from "../../object/block-names.ts";
import { DiskRecords } from "../../object/layers/disk-records.ts";
import { newToken, SHARED_TOKEN } from "../../object/mount-flag.ts";
import { detectGeometry } from "../../object/s3/auto-detect.ts";
import { S3MountFlag } from "../../object/s3/mount-flag.ts";
import type { S3Client } from "../../object/s3/s3-client.ts";
import { s3Client } from "../open-objects.ts";
import { obtainPassword } from "../password.ts";
import { locate, type Located } from "./chain.ts";
import { askMount, controlPath, type ControlRequest } from "./control.ts";

export interface CommandDisk {
  config: Config;
  log: Logger;
  client: S3Client;
  records: DiskRecords;
  located: Located;
  /** "bucket/prefix" as a user names the disk. */
  name: string;
  /** The command's own arguments after the disk. */
  rest: string[];
}

/** Opens the disk of a layer command (its flags already checked: config/build-config.ts). */
export async function openCommandDisk(config: Config, log: Logger): Promise<CommandDisk> {
  const client = s3Client(config, log);
  const records = new DiskRecords(client, log);
  const located = await locate(records, config.prefix);
  return { config, log, client, records, located, name: records.name(located.disk), rest: config.commandArgs };
}

/** The encryption password, when --encrypt was given (asked on a terminal if no other source). */
export function withPassword(config: Config): void {
  const enc = config.codec.encryption;
  if (enc && enc.password === undefined) enc.password = obtainPassword(enc).password;
}

/**
 * Hands `request` to the mount that has the disk on this host and returns its answer; undefined
 * when the disk is not mounted read-write. Mounted on another host, or in shared disk mode, or
 * flagged here with no mount answering: one line saying so.
 */
export async function throughMount(cd: CommandDisk, request: ControlRequest, what: string): Promise<string | undefined> {
  const flag = new S3MountFlag(cd.client, cd.located.disk);
  const holder = await flag.holder();
  if (holder === undefined) return undefined;
  const [host] = holder.split(" since ");
  if ((await flag.token()) === SHARED_TOKEN) throw new ConfigError(`${cd.name} is mounted in shared disk mode (${holder}): ${what} needs one writer; unmount those first`);
  if (host !== hostname()) throw new ConfigError(`${cd.name} is mounted on ${host} (since ${holder.slice(host!.length + 7) || "?"}): run 's3backer ${request.op}' there, or unmount it first`);
  const path = controlPath(cd.config.s3.baseURL, cd.config.bucket, cd.located.disk);
  const answer = await askMount(path, request);
  if (!answer) {
    throw new ConfigError(`${cd.name} is flagged as mounted on this host (${holder}) but no mount answers at ${path}: if that mount crashed, clear the flag (--reset-mounted-flag) first`);
  }
  if (!answer.ok) throw new ConfigError(answer.error);
  return answer.message;
}

/** Runs `work` holding the disk's mounted flag; cleared afterwards, whatever happened. */
export async function holdingFlag<T>(cd: CommandDisk, work: () => Promise<T>): Promise<T> {
  const flag = new S3MountFlag(cd.client, cd.located.disk);
  const warning = await flag.acquire(false, newToken());
  if (warning) cd.log.warn(warning);
  try {
    return await work();
  } finally {
    await flag.clear();
  }
}

/** A disk's geometry: its manifest's, else block 0's metadata. */
export async function geometryOf(cd: CommandDisk): Promise<{ blockSize: number; size: number; hashPrefix: boolean }> {
  const m = cd.located.found?.manifest;
  if (m) return { blockSize: m.blockSize, size: m.size, hashPrefix: m.hashPrefix };
  const hashPrefix = cd.config.blockHashPrefix;
  const detected = await detectGeometry(cd.client, cd.located.disk + blockName(0, hashPrefix));
  if (detected === "no disk") throw new ConfigError(`there is no disk at ${cd.name}${hashPrefix ? "" : " (if its blocks are named with a hash, add --blockHashPrefix)"}`);
  if (detected === "no metadata") {
    const { blockSize, fileSize } = cd.config;
    if (blockSize === undefined || fileSize === undefined) throw new ConfigError(`${cd.name}: block 0 carries no sizes: give --blockSize and --size`);
    return { blockSize, size: fileSize, hashPrefix };
  }
  return { blockSize: detected.blockSize, size: detected.fileSize, hashPrefix };
}
