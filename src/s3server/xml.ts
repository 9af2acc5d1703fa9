/** The few XML documents S3 answers with. */

export function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => `&${{ "<": "lt", ">": "gt", "&": "amp", "'": "apos", '"': "quot" }[c]};`);
}

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
