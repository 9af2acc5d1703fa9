/**
 * ListObjectsV2 under a prefix, page by page (1000 keys each, following continuation tokens):
 * each key with its size, which tells a layer's zero markers (empty objects) from blocks.
 */
import { decodeXml } from "../../util/xml.ts";
import type { S3Client } from "./s3-client.ts";

export interface Listed {
  key: string;
  size: number;
}

/** Calls `page` with each page's keys, in order; `maxKeys` below 1000 asks for one short page only. */
export async function listKeys(client: S3Client, prefix: string, page: (keys: Listed[]) => void, maxKeys = 1000): Promise<void> {
  let token: string | undefined;
  do {
    const query: Record<string, string> = { "list-type": "2", prefix, "max-keys": String(maxKeys) };
    if (token) query["continuation-token"] = token;
    const r = await client.send({ method: "GET", kind: "LIST", key: "", query, expect: [200] });
    const xml = new TextDecoder().decode(r.body);
    page(parseContents(xml));
    token = maxKeys >= 1000 && /<IsTruncated>true<\/IsTruncated>/.test(xml) ? decodeXml(/<NextContinuationToken>([^<]*)</.exec(xml)?.[1] ?? "") : undefined;
  } while (token);
}

/** Every key under a prefix (for small sets: a disk's records, not its blocks). */
export async function allKeys(client: S3Client, prefix: string): Promise<Listed[]> {
  const all: Listed[] = [];
  await listKeys(client, prefix, (keys) => all.push(...keys));
  return all;
}

function parseContents(xml: string): Listed[] {
  const found: Listed[] = [];
  for (const m of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
    const key = /<Key>([^<]*)<\/Key>/.exec(m[1]!)?.[1];
    if (key === undefined) continue;
    const size = Number(/<Size>(\d+)<\/Size>/.exec(m[1]!)?.[1] ?? -1);
    found.push({ key: decodeXml(key), size });
  }
  return found;
}
