/** Sizes written the way the original s3backer accepts them: `4096`, `4k`, `1M`, `10G`, `1T` (powers of 1024). */

const SUFFIXES: Record<string, number> = {
  "": 1,
  k: 2 ** 10,
  m: 2 ** 20,
  g: 2 ** 30,
  t: 2 ** 40,
  p: 2 ** 50,
  e: 2 ** 60,
};

/** Parses a size; returns undefined for anything that is not a whole, safe, non-negative number of bytes. */
export function parseSize(text: string): number | undefined {
  const m = /^\s*(\d+)\s*([kmgtpe]?)(?:i?b)?\s*$/i.exec(text);
  if (!m) return undefined;
  const value = Number(m[1]) * SUFFIXES[m[2]!.toLowerCase()]!;
  return Number.isSafeInteger(value) ? value : undefined;
}

/** The shortest exact form: 1048576 -> "1M", 1536 -> "1536". */
export function formatSize(bytes: number): string {
  for (const unit of ["E", "P", "T", "G", "M", "K"]) {
    const scale = SUFFIXES[unit.toLowerCase()]!;
    if (bytes >= scale && bytes % scale === 0) return `${bytes / scale}${unit}`;
  }
  return String(bytes);
}
