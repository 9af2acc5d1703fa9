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
 * Hands `request` to the mount that has the disk on this host (the socket the flag's token names)
 * and returns its answer; undefined when the disk is not mounted read-write. Mounted on another
 * host, or in shared disk mode, or flagged here with no mount answering: one line saying so, which
 * advises clearing the flag only once the process that set it is known to be gone.
 */
export async function throughMount(cd: CommandDisk, request: ControlRequest, what: string): Promise<string | undefined> {
  const flag = await new S3MountFlag(cd.client, cd.located.disk).read();
  if (flag === undefined) return undefined;
  const { holder, host, token, pid } = flag;
  if (token === SHARED_TOKEN) throw new ConfigError(`${cd.name} is mounted in shared disk mode (${holder}): ${what} needs one writer; unmount those first`);
  if (host !== hostname()) throw new ConfigError(`${cd.name} is mounted on ${host} (since ${holder.slice(host.length + 7) || "?"}): run 's3backer ${request.op}' there, or unmount it first`);
  const path = controlPath(cd.config.bucket, cd.located.disk, token);
  const answer = await askMount(path, request);
  if (!answer) {
    const flagged = `${cd.name} is flagged as mounted on this host (${holder}) but no mount answers at ${path}`;
    if (pid === undefined) throw new ConfigError(`${flagged}: a mount on this host may hold it (one that records no process id, such as the original s3backer's): unmount it first`);
    if (processAlive(pid)) throw new ConfigError(`${flagged}: process ${pid}, which set the flag, is running (a mount without a control socket, or another command): unmount it or let it finish first`);
    throw new ConfigError(`${flagged}, and process ${pid}, which set the flag, is gone: if that was a mount that crashed, clear the flag (--reset-mounted-flag) first`);
  }
  if (!answer.ok) throw new ConfigError(answer.error);
  return answer.message;
}

/** Whether process `pid` of this host is running (one of another user counts). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === "EPERM";
  }
}

/**
 * Refuses `what` of a disk that other disks read through (with `liveOnly`, only those reading its
 * live layer: a snapshot's levels never change): one line naming one of them.
 */
export async function refuseIfBase(records: DiskRecords, disk: string, what: string, liveOnly: boolean): Promise<void> {
  const dependent = (await records.dependents(disk)).find((d) => !liveOnly || d.snapshot === undefined);
  if (!dependent) return;
  const name = records.name(dependent.disk);
  const via = dependent.snapshot === undefined ? "" : ` (through @${dependent.snapshot})`;
  throw new ConfigError(`${records.name(disk)} is the base of ${name}${via}: ${what} is refused while disks read through it (flatten or erase ${name} first)`);
}

/**
 * Runs `work` holding the disk's mounted flag; cleared afterwards, whatever happened. With
 * `unlessBase`, the work (named so) is refused first if the disk is a base: checked under the flag,
 * which a clone being made checks after writing its record, so one of the two sees the other.
 */
export async function holdingFlag<T>(cd: CommandDisk, work: () => Promise<T>, unlessBase?: { what: string; liveOnly: boolean }): Promise<T> {
  const flag = new S3MountFlag(cd.client, cd.located.disk);
  const warning = await flag.acquire(false, newToken());
  if (warning) cd.log.warn(warning);
  try {
    if (unlessBase) await refuseIfBase(cd.records, cd.located.disk, unlessBase.what, unlessBase.liveOnly);
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
