/** The few XML documents S3 answers with. */

import { decodeXml, escapeXml } from "../util/xml.ts";

export function errorXml(code: string, message: string, resource: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${escapeXml(message)}</Message><Resource>${escapeXml(resource)}</Resource><RequestId>0</RequestId></Error>`;
}

export interface ListResult {
  bucket: string;
  prefix: string;
  delimiter: string | undefined;
  maxKeys: number;
  startAfter: string | undefined;
  continuationToken: string | undefined;
  contents: { key: string; etag: string; size: number; lastModified: number }[];
  commonPrefixes: string[];
  nextContinuationToken: string | undefined;
}

export function listXml(r: ListResult): string {
  const items = r.contents
    .map(
      (c) =>
        `<Contents><Key>${escapeXml(c.key)}</Key><LastModified>${new Date(c.lastModified).toISOString()}</LastModified><ETag>&quot;${c.etag}&quot;</ETag><Size>${c.size}</Size><StorageClass>STANDARD</StorageClass></Contents>`,
    )
    .join("");
  const prefixes = r.commonPrefixes.map((p) => `<CommonPrefixes><Prefix>${escapeXml(p)}</Prefix></CommonPrefixes>`).join("");
  const opt = (tag: string, v: string | undefined) => (v === undefined ? "" : `<${tag}>${escapeXml(v)}</${tag}>`);
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
    `<Name>${escapeXml(r.bucket)}</Name><Prefix>${escapeXml(r.prefix)}</Prefix>${opt("Delimiter", r.delimiter)}` +
    `<MaxKeys>${r.maxKeys}</MaxKeys><KeyCount>${r.contents.length + r.commonPrefixes.length}</KeyCount>` +
    `<IsTruncated>${r.nextContinuationToken !== undefined}</IsTruncated>` +
    `${opt("StartAfter", r.startAfter)}${opt("ContinuationToken", r.continuationToken)}${opt("NextContinuationToken", r.nextContinuationToken)}` +
    `${items}${prefixes}</ListBucketResult>`
  );
}

const XMLNS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"';
const HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n';

export function bucketsXml(buckets: readonly string[], owner: string): string {
  const items = buckets.map((b) => `<Bucket><Name>${escapeXml(b)}</Name><CreationDate>${new Date(0).toISOString()}</CreationDate></Bucket>`).join("");
  return `${HEAD}<ListAllMyBucketsResult ${XMLNS}><Owner><ID>${escapeXml(owner)}</ID><DisplayName>${escapeXml(owner)}</DisplayName></Owner><Buckets>${items}</Buckets></ListAllMyBucketsResult>`;
}

/** The keys of a DeleteObjects request, and whether it asked for a quiet answer. */
export function parseDeleteRequest(xml: string): { keys: string[]; quiet: boolean } | undefined {
  if (!/<Delete[\s>]/.test(xml)) return undefined;
  const keys = [...xml.matchAll(/<Object>[\s\S]*?<Key>([^<]*)<\/Key>[\s\S]*?<\/Object>/g)].map((m) => decodeXml(m[1]!));
  return { keys, quiet: /<Quiet>\s*true\s*<\/Quiet>/i.test(xml) };
}

export function deleteResultXml(deleted: readonly string[]): string {
  return `${HEAD}<DeleteResult ${XMLNS}>${deleted.map((k) => `<Deleted><Key>${escapeXml(k)}</Key></Deleted>`).join("")}</DeleteResult>`;
}

export function initiateXml(bucket: string, key: string, uploadId: string): string {
  return `${HEAD}<InitiateMultipartUploadResult ${XMLNS}><Bucket>${escapeXml(bucket)}</Bucket><Key>${escapeXml(key)}</Key><UploadId>${uploadId}</UploadId></InitiateMultipartUploadResult>`;
}

export function completeXml(location: string, bucket: string, key: string, etag: string): string {
  return `${HEAD}<CompleteMultipartUploadResult ${XMLNS}><Location>${escapeXml(location)}</Location><Bucket>${escapeXml(bucket)}</Bucket><Key>${escapeXml(key)}</Key><ETag>&quot;${etag}&quot;</ETag></CompleteMultipartUploadResult>`;
}

export function locationXml(region: string): string {
  return `${HEAD}<LocationConstraint ${XMLNS}>${region === "us-east-1" ? "" : escapeXml(region)}</LocationConstraint>`;
}

/** The only ACL this server has: the owner's full control. */
export function aclXml(owner: string): string {
  const who = `<ID>${escapeXml(owner)}</ID><DisplayName>${escapeXml(owner)}</DisplayName>`;
  return `${HEAD}<AccessControlPolicy ${XMLNS}><Owner>${who}</Owner><AccessControlList><Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser">${who}</Grantee><Permission>FULL_CONTROL</Permission></Grant></AccessControlList></AccessControlPolicy>`;
}
