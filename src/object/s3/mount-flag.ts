/**
 * The 'already mounted' flag object, as the original names and writes it: `<prefix>s3backer-mounted`
 * holding the host name and time, its token in a header. It is created with `If-None-Match: *`, so
 * of two mounts that race only one can win. Servers differ here: one that refuses the header (501)
 * gets a plain PUT, and one that ignores it is caught by a second conditional PUT, which must fail
 * once the flag exists; both mount with a warning that racing mounts are not excluded. A 409
 * (AWS's ConditionalRequestConflict) is another mount setting the flag at the same moment.
 */
import { hex8 } from "../block-names.ts";
import { checkHeld, flagText, MOUNTED_FLAG, mountedError, type MountFlagStore } from "../mount-flag.ts";
import type { S3Client, S3Response } from "./s3-client.ts";

const TOKEN_HEADER = "x-amz-meta-s3backer-mount-token";
/** The process that set the flag (a header: the body stays the original's). */
const PID_HEADER = "x-amz-meta-s3backer-pid";

/** The flag as stored: who holds it, with the mount token and the process id (none from the original s3backer). */
export interface FlagHolder {
  holder: string;
  host: string;
  token: number;
  pid: number | undefined;
}
const RACES_NOT_EXCLUDED = "two mounts started at the same moment are not kept apart";

export class S3MountFlag implements MountFlagStore {
  readonly key: string;
  constructor(
    private readonly client: S3Client,
    prefix: string,
  ) {
    this.key = prefix + MOUNTED_FLAG;
  }

  /** Who holds the flag ("host since time"), or undefined when it is clear. */
  async holder(): Promise<string | undefined> {
    const r = await this.client.send({ method: "GET", kind: "GET", key: this.key, expect: [200, 404] });
    return r.status === 404 ? undefined : holderOf(r);
  }

  /** The flag with its token and process id in one request, or undefined when it is clear. */
  async read(): Promise<FlagHolder | undefined> {
    const r = await this.client.send({ method: "GET", kind: "GET", key: this.key, expect: [200, 404] });
    if (r.status === 404) return undefined;
    const pid = Number(r.headers.get(PID_HEADER));
    return { holder: holderOf(r), host: new TextDecoder().decode(r.body).split("\n")[0]!.trim(), token: tokenOf(r), pid: Number.isSafeInteger(pid) && pid > 0 ? pid : undefined };
  }

  async token(): Promise<number | undefined> {
    const r = await this.client.send({ method: "HEAD", kind: "HEAD", key: this.key, expect: [200, 404] });
    return r.status === 404 ? undefined : tokenOf(r);
  }

  async acquire(force: boolean, token: number): Promise<string | undefined> {
    const found = await this.client.send({ method: "GET", kind: "GET", key: this.key, expect: [200, 404] });
    const held = found.status === 404 ? undefined : { holder: holderOf(found), token: tokenOf(found) };
    if (checkHeld(this.key, held, token, force)) return undefined;
    if (force || held) {
      await this.put(token, false);
      return undefined;
    }
    const first = await this.put(token, true);
    if (first.status === 501) {
      await this.put(token, false);
      return `the server does not support conditional PUT (If-None-Match): ${RACES_NOT_EXCLUDED}`;
    }
    if (first.status === 409) throw mountedError(this.key, "another mount setting the flag at this moment");
    // A retry of a PUT whose answer was lost finds the flag it stored itself.
    if (first.status === 412 && (await this.token()) !== token) {
      throw mountedError(this.key, (await this.holder()) ?? "another mount that just won the race");
    }
    const probe = await this.put(token, true);
    if (probe.status === 200 || probe.status === 501) return `the server ignores If-None-Match on PUT: ${RACES_NOT_EXCLUDED}`;
    return undefined;
  }

  private put(token: number, conditional: boolean): Promise<S3Response> {
    const headers: Record<string, string> = { "content-type": "text/plain", [TOKEN_HEADER]: hex8(token), [PID_HEADER]: String(process.pid) };
    if (conditional) headers["if-none-match"] = "*";
    const body = new TextEncoder().encode(flagText());
    return this.client.send({ method: "PUT", kind: "PUT", key: this.key, headers, body, expect: conditional ? [200, 409, 412, 501] : [200] });
  }

  async clear(): Promise<void> {
    await this.client.send({ method: "DELETE", kind: "DELETE", key: this.key, expect: [200, 204, 404] });
  }
}

const holderOf = (r: S3Response) => new TextDecoder().decode(r.body).trim().replace(/\n/g, " since ") || "unknown";
const tokenOf = (r: S3Response) => parseInt(r.headers.get(TOKEN_HEADER) ?? "0", 16) || 0;
