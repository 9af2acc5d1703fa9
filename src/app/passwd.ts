/**
 * `s3backer passwd bucket[/prefix]`: a new password for a disk made with --encrypt --keyWrap. The
 * data key is unwrapped with the old password and wrapped again with the new one (fresh salt,
 * today's KDF parameters, the generation one more), and the key object is replaced by one
 * conditional PUT: a crash at any moment leaves the old object or the new one, so the old
 * password or the new one opens the disk, never neither (object/s3/key-object.ts). No block is
 * touched. A disk in the original's format has no key to rewrap: its blocks would all have to be
 * rewritten, which passwd does not offer.
 */
import type { Config } from "../config/settings.ts";
import { ConfigError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { ObjectStore } from "../object/object-store.ts";
import { cipherOfLayer, parseEncoding } from "../store/codec/content-encoding.ts";
import { wrapKey } from "../store/codec/wrapped-key.ts";
import { unwrap } from "./disk-key.ts";
import { openObjects } from "./open-objects.ts";
import { obtainNewPassword, obtainPassword } from "./password.ts";

export async function changePassword(config: Config, log: Logger): Promise<number> {
  const { objects, keyObject } = await openObjects(config, log, false);
  try {
    const disk = `${config.bucket}${config.prefix ? `/${config.prefix.replace(/\/$/, "")}` : ""}`;
    const found = await keyObject!.read(); // S3 only: --test is refused in the config
    if (!found) throw new ConfigError(await withoutKeyObject(objects, disk, keyObject!.where));
    const enc = config.codec.encryption!; // passwd implies --encrypt
    const oldPassword = obtainPassword(enc).password;
    const newPassword = obtainNewPassword(config.newPasswordFile);
    if (newPassword === oldPassword) throw new ConfigError("the new password is the old one: nothing was changed");
    const key = await unwrap(found.body, oldPassword, keyObject!.where);
    const generation = key.generation + 1;
    const body = await wrapKey({ ...key, generation }, newPassword);
    if (!(await keyObject!.replace(body, found.etag))) {
      throw new ConfigError(`${keyObject!.where} changed while this ran (another passwd?): nothing was changed here; run it again`);
    }
    for (const warning of keyObject!.warnings.splice(0)) log.warn(warning);
    const stored = await keyObject!.read();
    if (!stored || !Buffer.from(stored.body).equals(Buffer.from(body))) {
      throw new ConfigError(`${keyObject!.where}: read back, it is not the key object just stored (another passwd at the same moment?): try the new password, then the old one`);
    }
    if (!config.quiet) process.stderr.write(`s3backer: password changed (${keyObject!.where}, generation ${generation}); no block was rewritten\n`);
    return 0;
  } finally {
    await objects.close();
  }
}

/** Why a disk without a key object has no password to change, in one line. */
async function withoutKeyObject(objects: ObjectStore, disk: string, where: string): Promise<string> {
  const block = await objects.anyBlock();
  if (block === undefined) return `${disk} has no key object (${where}): only a disk made with --encrypt --keyWrap has a password to change`;
  const encoding = (await objects.head(block))?.encoding;
  if (!parseEncoding(encoding).some((layer) => cipherOfLayer(layer) !== undefined)) return `${disk} is not encrypted: there is no password to change`;
  return (
    `${disk} is encrypted in the original's format: its key is derived from the password itself, so a new password would mean ` +
    "rewriting every block, which passwd does not do (copy the data to a new disk made with --encrypt --keyWrap instead)"
  );
}
