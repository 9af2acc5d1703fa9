/**
 * The small objects that tie layered disks together, in S3: each disk's manifest, changed only by
 * conditional PUTs (`If-None-Match: *` to create, `If-Match: <ETag>` to replace), and the
 * bucket's dependents records, `s3backer-dependents/<base>/<dependent>`: one object per disk that
 * reads through another, outside the base's prefix (so a base's own objects never change), which
 * is what freezes the base. Disk names are key prefixes; in record keys each is URI-encoded, so
 * that one base's records never list with another's.
 */
import { hostname } from "node:os";
import { ConfigError, Errno, FsError, messageOf } from "../../errors.ts";
import { md5Base64, md5Hex } from "../../util/md5.ts";
import { delay } from "../../util/delay.ts";
import type { S3Client } from "../s3/s3-client.ts";
import { allKeys, listKeys } from "../s3/listing.ts";
import { manifestKey, parseManifest, serialize, type Manifest } from "./manifest.ts";

export const DEPENDENTS = "s3backer-dependents/";
/** A record whose dependent has no manifest yet is a clone being made, for this long. */
const BEING_MADE_MS = 10 * 60_000;

export interface DependentRecord {
  /** The dependent disk's prefix. */
  disk: string;
  /** Set when it reads through a snapshot of the base, not the base's live layer. */
  snapshot?: string;
  created: string;
  host: string;
}

export interface FoundManifest {
  manifest: Manifest;
  etag: string;
}

const unquote = (etag: string | null) => (etag ?? "").replace(/"/g, "").toLowerCase();
const recordPrefix = (base: string) => `${DEPENDENTS}${encodeURIComponent(base)}/`;
const recordKey = (base: string, dependent: string) => recordPrefix(base) + encodeURIComponent(dependent);

export class DiskRecords {
  constructor(
    readonly client: S3Client,
    private readonly log: { warn(line: string): void },
  ) {}

  /** "bucket/prefix" of a disk, as a user names it. */
  name(disk: string): string {
    return `${this.client.bucket}${disk ? `/${disk.replace(/\/$/, "")}` : ""}`;
  }

  async manifest(disk: string): Promise<FoundManifest | undefined> {
    const key = manifestKey(disk);
    const r = await this.client.send({ method: "GET", kind: "GET", key, expect: [200, 404] });
    if (r.status === 404) return undefined;
    return { manifest: parseManifest(key, r.body), etag: unquote(r.headers.get("etag")) || md5Hex(r.body) };
  }

  /** The manifest's ETag as stored now ("" when there is none). */
  private async manifestEtag(disk: string): Promise<string> {
    const r = await this.client.send({ method: "HEAD", kind: "HEAD", key: manifestKey(disk), expect: [200, 404] });
    return r.status === 404 ? "" : unquote(r.headers.get("etag"));
  }

  /**
   * Replaces the manifest that has ETag `expected` ("" : there is none) with `m`, atomically:
   * afterwards the server holds the old or the new, never a mix. Returns the new ETag. One that
   * changed meanwhile is a ConfigError. When the answer is lost (the PUT may or may not have
   * landed), the stored ETag is read until it tells; `settleForever` keeps reading however long
   * storage stays away (a mount holding its writes must learn which manifest is in force).
   */
  async replaceManifest(disk: string, m: Manifest, expected: string, settleForever = false): Promise<string> {
    const key = manifestKey(disk);
    const body = serialize(m);
    const etag = md5Hex(body);
    try {
      const status = await this.conditionalPut(key, body, expected, false);
      if (status === 200) return etag;
      if (status === 409) throw changed(this.name(disk));
      if (status === 501) {
        // No conditional PUT on this server: check, then put plainly (the mounted flag the caller holds keeps other commands off).
        this.log.warn(`the server does not support conditional PUT (If-Match): ${key} is replaced without it`);
        if ((await this.manifestEtag(disk)) !== expected) throw changed(this.name(disk));
        await this.client.send({ method: "PUT", kind: "PUT", key, headers: putHeaders(body), body, expect: [200] });
        return etag;
      }
      // 412: another command's change, or ours that landed on an attempt whose answer was lost,
      // or a server that takes If-Match only quoted.
      const now = await this.manifestEtag(disk);
      if (now === etag) return etag;
      if (now !== expected || expected === "") throw changed(this.name(disk));
      if ((await this.conditionalPut(key, body, expected, true)) === 200) return etag;
      throw changed(this.name(disk));
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      return this.settle(disk, etag, expected, err, settleForever);
    }
  }

  /** After a PUT whose outcome is unknown: the stored ETag says whether it landed. */
  private async settle(disk: string, etag: string, expected: string, sent: unknown, forever: boolean): Promise<string> {
    const key = manifestKey(disk);
    for (let attempt = 1; ; attempt++) {
      let now: string;
      try {
        now = await this.manifestEtag(disk);
      } catch (err) {
        if (!forever) throw new FsError(Errno.EIO, `${key}: whether it was replaced is unknown (${messageOf(err)}): 's3backer info' tells`);
        this.log.warn(`${key}: cannot tell yet whether it was replaced (${messageOf(err)}): asking again, writes wait meanwhile`);
        await delay(Math.min(60_000, 1000 * 2 ** Math.min(attempt, 6)));
        continue;
      }
      if (now === etag) return etag;
      if (now === expected) throw sent; // it did not land
      throw changed(this.name(disk));
    }
  }

  private async conditionalPut(key: string, body: Uint8Array, expected: string, quoted: boolean): Promise<number> {
    const headers = putHeaders(body);
    // RGW takes If-Match only unquoted; AWS either way.
    if (expected === "") headers["if-none-match"] = "*";
    else headers["if-match"] = quoted ? `"${expected}"` : expected;
    const r = await this.client.send({ method: "PUT", kind: "PUT", key, headers, body, expect: [200, 409, 412, 501] });
    return r.status;
  }

  /**
   * A snapshot's new live layer must hold nothing yet: an object there (another disk named inside
   * this one, left from before such names were refused, or put there by hand) would show through.
   */
  async checkNewLayer(disk: string, layer: string): Promise<void> {
    let found: string | undefined;
    await listKeys(this.client, layer, (keys) => (found ??= keys[0]?.key), 1);
    if (found !== undefined) {
      throw new ConfigError(`${this.name(disk)}: its next layer ${layer} already holds objects (${found}) that are not this disk's: nothing done; move them away first`);
    }
  }

  async deleteManifest(disk: string): Promise<void> {
    await this.client.send({ method: "DELETE", kind: "DELETE", key: manifestKey(disk), expect: [200, 204, 404] });
  }

  async addDependent(base: string, record: Omit<DependentRecord, "created" | "host">): Promise<void> {
    const full: DependentRecord = { ...record, created: new Date().toISOString(), host: hostname() };
    const body = new TextEncoder().encode(`${JSON.stringify(full)}\n`);
    await this.client.send({ method: "PUT", kind: "PUT", key: recordKey(base, record.disk), headers: putHeaders(body), body, expect: [200] });
  }

  async removeDependent(base: string, dependent: string): Promise<void> {
    await this.client.send({ method: "DELETE", kind: "DELETE", key: recordKey(base, dependent), expect: [200, 204, 404] });
  }

  /** Every record naming `base`, as stored (stale ones too). */
  async records(base: string): Promise<DependentRecord[]> {
    const found: DependentRecord[] = [];
    for (const { key } of await allKeys(this.client, recordPrefix(base))) {
      const r = await this.client.send({ method: "GET", kind: "GET", key, expect: [200, 404] });
      if (r.status === 404) continue;
      try {
        found.push(JSON.parse(new TextDecoder().decode(r.body)) as DependentRecord);
      } catch {
        this.log.warn(`${key}: not a dependents record: ignored`);
      }
    }
    return found;
  }

  /**
   * The disks that read through `base` now: a record counts while its disk's manifest names the
   * base (or cannot be read as a manifest: it may), or while that disk is being made (no manifest
   * yet, a young record). Only a manifest the server says is not there (404) makes a record stale
   * (a dependent erased or flattened by a crashed command); with `prune`, stale records are
   * removed. A manifest that cannot be fetched (5xx, timeout) fails the call: the base stays frozen.
   */
  async dependents(base: string, prune = true): Promise<DependentRecord[]> {
    const live: DependentRecord[] = [];
    for (const record of await this.records(base)) {
      let found: FoundManifest | undefined;
      try {
        found = await this.manifest(record.disk);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        this.log.warn(`${messageOf(err)}: ${this.name(record.disk)} counts as reading through ${this.name(base)}`);
        live.push(record);
        continue;
      }
      const young = Date.now() - Date.parse(record.created) < BEING_MADE_MS;
      const uses = found?.manifest.base?.disk === base || found?.manifest.chain.some((l) => l.disk === base) === true;
      if (uses || (!found && young)) live.push(record);
      else if (prune) {
        this.log.warn(`${this.name(base)}: the record of ${this.name(record.disk)} is stale (that disk no longer reads through it): removed`);
        await this.removeDependent(base, record.disk);
      }
    }
    return live;
  }
}

function putHeaders(body: Uint8Array): Record<string, string> {
  return { "content-type": "application/json", "content-md5": md5Base64(body) };
}

function changed(name: string): ConfigError {
  return new ConfigError(`${name} was changed by another command meanwhile: nothing done; try again`);
}
