/** The five XML entities, both ways: S3 requests and answers carry keys in XML. */
const ENTITIES: Record<string, string> = { "<": "lt", ">": "gt", "&": "amp", "'": "apos", '"': "quot" };
const CHARS: Record<string, string> = { lt: "<", gt: ">", amp: "&", apos: "'", quot: '"' };

export function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => `&${ENTITIES[c]};`);
}

export function decodeXml(s: string): string {
  return s.replace(/&(lt|gt|amp|apos|quot);/g, (_, e: string) => CHARS[e]!);
}
