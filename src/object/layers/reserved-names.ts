/**
 * The names s3backer keeps for a disk's own objects beside its blocks: the mounted flag, the key
 * object, the manifest and the snapshot layers, and at the bucket's root the dependents records.
 * A disk whose name has such a part would live inside another disk's objects (a clone named
 * `disk/s3backer-layer-1` would become that disk's live layer at its next snapshot), so no disk
 * may be named so. Disks may nest otherwise (`bucket/a` and `bucket/a/b` are two disks): a disk's
 * objects are only its block names and these names, directly under its prefix.
 */
import { KEY_OBJECT } from "../key-object.ts";
import { MOUNTED_FLAG } from "../mount-flag.ts";
import { DEPENDENTS } from "./disk-records.ts";
import { LAYER_NAME, MANIFEST_NAME } from "./manifest.ts";

const EXACT = new Set([MOUNTED_FLAG, KEY_OBJECT, MANIFEST_NAME, DEPENDENTS.replace(/\/$/, "")]);

/** The first part of a disk's key prefix that is a reserved name, or undefined when there is none. */
export function reservedPart(prefix: string): string | undefined {
  return prefix.split("/").find((part) => EXACT.has(part) || part.startsWith(LAYER_NAME));
}
