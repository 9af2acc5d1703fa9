/**
 * Where the S3 credentials come from, first match wins: --accessId/--accessKey; --accessFile
 * (default ~/.s3backer_passwd, `id:key` lines); AWS_ACCESS_KEY_ID and friends; AWS_PROFILE in
 * ~/.aws/credentials and ~/.aws/config; --accessEC2IAM (instance metadata). None: unsigned requests.
 */
import { homedir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../../errors.ts";
import { readInputFile } from "../../util/flag-paths.ts";
import { ImdsCredentials } from "./imds.ts";

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface CredentialSource {
  /** Where they came from, for logs (never the secret). */
  readonly origin: string;
  /** Current credentials (refreshed when they expire), or undefined for unsigned requests. */
  get(): Promise<Credentials | undefined>;
}

export interface CredentialFlags {
  accessId: string | undefined;
  accessKey: string | undefined;
  accessFile: string | undefined;
  accessEC2IAM: string | undefined;
}

type Env = Record<string, string | undefined>;

const fixed = (origin: string, c: Credentials | undefined): CredentialSource => ({ origin, get: async () => c });

export function credentialSource(flags: CredentialFlags, env: Env = process.env, home = homedir()): CredentialSource {
  if (flags.accessEC2IAM) return new ImdsCredentials(flags.accessEC2IAM, env.AWS_EC2_METADATA_SERVICE_ENDPOINT);
  if (flags.accessId && flags.accessKey) return fixed("--accessId/--accessKey", { accessKeyId: flags.accessId, secretAccessKey: flags.accessKey });
  if (flags.accessKey) throw new ConfigError("--accessKey needs --accessId");

  const accessFile = flags.accessFile ?? join(home, ".s3backer_passwd");
  const text = readInputFile(flags.accessFile !== undefined ? `--accessFile=${accessFile}` : accessFile, accessFile, flags.accessFile === undefined);
  if (text !== undefined) {
    const pairs = text
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"))
      .map((l) => {
        const colon = l.indexOf(":");
        if (colon <= 0) throw new ConfigError(`${accessFile}: lines must be 'accessId:accessKey'`);
        return { accessKeyId: l.slice(0, colon), secretAccessKey: l.slice(colon + 1) };
      });
    const match = flags.accessId ? pairs.find((p) => p.accessKeyId === flags.accessId) : pairs[0];
    if (match) return fixed(accessFile, match);
    if (flags.accessId) throw new ConfigError(`no key for access ID '${flags.accessId}' in ${accessFile}`);
  }
  if (flags.accessId) throw new ConfigError(`--accessId needs --accessKey or a line for it in ${accessFile}`);

  if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
    return fixed("AWS_ACCESS_KEY_ID", {
      accessKeyId: env.AWS_ACCESS_KEY_ID,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
      ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
    });
  }
  const profile = env.AWS_PROFILE ?? "default";
  const fromProfile = profileCredentials(profile, env, home);
  if (fromProfile) return fixed(`AWS profile '${profile}'`, fromProfile);
  if (env.AWS_PROFILE) throw new ConfigError(`AWS_PROFILE=${profile}: no credentials for it in ~/.aws/credentials or ~/.aws/config`);
  return fixed("none (unsigned requests)", undefined);
}

/** The region from AWS_REGION, AWS_DEFAULT_REGION or the profile's `region`, if any. */
export function envRegion(env: Env = process.env, home = homedir()): string | undefined {
  if (env.AWS_REGION) return env.AWS_REGION;
  if (env.AWS_DEFAULT_REGION) return env.AWS_DEFAULT_REGION;
  const config = iniFile(env.AWS_CONFIG_FILE ?? join(home, ".aws", "config"));
  const profile = env.AWS_PROFILE ?? "default";
  return (config.get(profile === "default" ? "default" : `profile ${profile}`) ?? config.get(profile))?.get("region");
}

function profileCredentials(profile: string, env: Env, home: string): Credentials | undefined {
  const credentials = iniFile(env.AWS_SHARED_CREDENTIALS_FILE ?? join(home, ".aws", "credentials"));
  const config = iniFile(env.AWS_CONFIG_FILE ?? join(home, ".aws", "config"));
  for (const section of [credentials.get(profile), config.get(`profile ${profile}`), config.get(profile)]) {
    const id = section?.get("aws_access_key_id");
    const key = section?.get("aws_secret_access_key");
    if (id && key) {
      const token = section!.get("aws_session_token");
      return { accessKeyId: id, secretAccessKey: key, ...(token ? { sessionToken: token } : {}) };
    }
  }
  return undefined;
}

/** A minimal INI reader: `[section]` and `name = value` lines. */
function iniFile(path: string): Map<string, Map<string, string>> {
  const sections = new Map<string, Map<string, string>>();
  const text = readInputFile(path, path, true);
  if (text === undefined) return sections;
  let current: Map<string, string> | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      current = new Map();
      sections.set(header[1]!.trim(), current);
      continue;
    }
    const eq = line.indexOf("=");
    if (eq > 0 && current) current.set(line.slice(0, eq).trim().toLowerCase(), line.slice(eq + 1).trim());
  }
  return sections;
}
