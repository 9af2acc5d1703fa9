/**
 * S3 servers for tests: the embedded one in this process (port 0), and Ceph RGW when .ci/run (or
 * scripts/rgw.sh) started one and exported S3_RGW_URL, S3_RGW_ACCESS_KEY and S3_RGW_SECRET_KEY.
 */
import { AwsClient } from "aws4fetch";
import { S3Server } from "../../src/s3server/s3-server.ts";

export const ACCESS = "TESTACCESSKEY";
export const SECRET = "test-secret-key-0123456789";

export interface Peer {
  name: string;
  url: string;
  accessKey: string;
  secretKey: string;
  /** The embedded server, for fault injection and counters; undefined for real servers. */
  embedded: S3Server | undefined;
  /** RGW's If-Match on PUT works only with an unquoted ETag. */
  unquotedIfMatch: boolean;
}

export function startEmbedded(buckets: string[] = []): S3Server {
  const server = new S3Server({ credentials: { [ACCESS]: { secretAccessKey: SECRET } }, buckets });
  server.start();
  return server;
}

export function embeddedPeer(server: S3Server): Peer {
  return { name: "embedded", url: server.url, accessKey: ACCESS, secretKey: SECRET, embedded: server, unquotedIfMatch: false };
}

export function rgwPeer(): Peer | undefined {
  const { S3_RGW_URL, S3_RGW_ACCESS_KEY, S3_RGW_SECRET_KEY } = process.env;
  if (!S3_RGW_URL || !S3_RGW_ACCESS_KEY || !S3_RGW_SECRET_KEY) {
    // In CI the real server is part of the contract: its absence is a failure, not a skip.
    if (process.env.CI) throw new Error("CI is set but S3_RGW_URL is not: .ci/run must start Ceph RGW (scripts/rgw.sh)");
    return undefined;
  }
  return { name: "ceph-rgw", url: S3_RGW_URL, accessKey: S3_RGW_ACCESS_KEY, secretKey: S3_RGW_SECRET_KEY, embedded: undefined, unquotedIfMatch: true };
}

/** Flags that point s3backer at a peer. */
export function peerArgs(peer: Peer): string[] {
  return [`--baseURL=${peer.url}`, `--accessId=${peer.accessKey}`, `--accessKey=${peer.secretKey}`];
}

/** Plain signed requests to a peer, for checking what is in the bucket. */
export function rawClient(peer: Peer) {
  const aws = new AwsClient({ accessKeyId: peer.accessKey, secretAccessKey: peer.secretKey, service: "s3", region: "us-east-1", retries: 0 });
  return async (method: string, path: string, init: { headers?: Record<string, string>; body?: Uint8Array | string } = {}) => {
    const signed = await aws.sign(`${peer.url}${path}`, { method, headers: init.headers, body: init.body });
    // Bodies exactly as stored: Bun's fetch would otherwise inflate a "deflate" one.
    const r = await fetch(signed, { decompress: false } as RequestInit);
    return { status: r.status, headers: r.headers, body: new Uint8Array(await r.arrayBuffer()) };
  };
}

let bucketCounter = 0;
/** A fresh bucket name for one test (created on the peer). */
export async function freshBucket(peer: Peer, tag: string): Promise<string> {
  const name = `t-${tag}-${process.pid}-${Date.now() % 1e6}-${bucketCounter++}`.toLowerCase().slice(0, 63);
  const r = await rawClient(peer)("PUT", name);
  if (r.status !== 200) throw new Error(`creating bucket ${name} on ${peer.name}: HTTP ${r.status}`);
  return name;
}

/** Deletes a bucket and everything in it (for buckets made on a shared server such as Ceph RGW). */
export async function dropBucket(peer: Peer, name: string): Promise<void> {
  const s3 = rawClient(peer);
  for (;;) {
    const xml = new TextDecoder().decode((await s3("GET", `${name}?list-type=2&max-keys=1000`)).body);
    const keys = [...xml.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]!.replace(/&amp;/g, "&").replace(/&lt;/g, "<").replace(/&gt;/g, ">"));
    if (keys.length === 0) break;
    await Promise.all(keys.map((k) => s3("DELETE", `${name}/${k.split("/").map(encodeURIComponent).join("/")}`)));
  }
  await s3("DELETE", name);
}
