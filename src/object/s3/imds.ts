/**
 * Credentials of an EC2 instance's IAM role from the instance metadata service, IMDSv2 style
 * (a session token first), refreshed a few minutes before they expire.
 */
import { ConfigError, messageOf } from "../../errors.ts";
import type { CredentialSource, Credentials } from "./credentials.ts";

const DEFAULT_ENDPOINT = "http://169.254.169.254";
const REFRESH_BEFORE_MS = 5 * 60 * 1000;
const TOKEN_TTL_S = 21600;

export class ImdsCredentials implements CredentialSource {
  readonly origin: string;
  private current: { credentials: Credentials; expires: number } | undefined;
  private pending: Promise<Credentials> | undefined;
  private readonly endpoint: string;

  constructor(
    private readonly role: string,
    endpoint: string | undefined,
  ) {
    this.endpoint = (endpoint ?? DEFAULT_ENDPOINT).replace(/\/+$/, "");
    this.origin = `EC2 instance role '${role}'`;
  }

  async get(): Promise<Credentials> {
    if (this.current && Date.now() < this.current.expires - REFRESH_BEFORE_MS) return this.current.credentials;
    // One refresh at a time, shared by every request that needs it.
    this.pending ??= this.fetchCredentials().finally(() => (this.pending = undefined));
    return this.pending;
  }

  private async fetchCredentials(): Promise<Credentials> {
    try {
      const tokenResponse = await fetch(`${this.endpoint}/latest/api/token`, {
        method: "PUT",
        headers: { "x-aws-ec2-metadata-token-ttl-seconds": String(TOKEN_TTL_S) },
        signal: AbortSignal.timeout(5000),
      });
      if (!tokenResponse.ok) throw new Error(`token request answered ${tokenResponse.status}`);
      const token = await tokenResponse.text();
      const r = await fetch(`${this.endpoint}/latest/meta-data/iam/security-credentials/${encodeURIComponent(this.role)}`, {
        headers: { "x-aws-ec2-metadata-token": token },
        signal: AbortSignal.timeout(5000),
      });
      if (!r.ok) throw new Error(`role '${this.role}' answered ${r.status}`);
      const j = (await r.json()) as { AccessKeyId: string; SecretAccessKey: string; Token?: string; Expiration?: string };
      const credentials: Credentials = { accessKeyId: j.AccessKeyId, secretAccessKey: j.SecretAccessKey, ...(j.Token ? { sessionToken: j.Token } : {}) };
      const expires = j.Expiration ? Date.parse(j.Expiration) : Date.now() + 3600_000;
      this.current = { credentials, expires };
      return credentials;
    } catch (err) {
      throw new ConfigError(`instance metadata at ${this.endpoint}: ${messageOf(err)}`);
    }
  }
}
