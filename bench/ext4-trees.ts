/**
 * The trees the ext4 benchmark copies and reads back, made once on tmpfs, each with the same
 * 256 MiB file of random bytes:
 *   synthetic  9,349 files of 1-49 KiB, mostly zero pages, in 100 directories (seeded);
 *   real       a copy (`cp -a`, links kept as links) of this machine's own documentation, C headers
 *              and Python library: thousands of directories, most files under 4 KiB, so ext4's
 *              metadata (inode tables, directory blocks, the journal) weighs as on a real disk.
 */
import { existsSync, linkSync, lstatSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { seededRandom } from "../test/helpers/data.ts";
import { median, run } from "./helpers.ts";

export const TREE_NAMES = ["synthetic", "real"] as const;
export type TreeName = (typeof TREE_NAMES)[number];

/** What the real tree copies, where present as a directory; a fixed list, so runs compare. */
const REAL_SOURCES = ["/usr/share/doc", "/usr/include", "/usr/lib/python3"];
const BIG_MIB = 256;

export interface Shape { files: number; directories: number; links: number; medianFileBytes: number; under4KiB: number; bytes: number }
export interface Tree { name: TreeName; path: string; shape: Shape }

/** Makes the named trees under `work` (once each) and measures them. */
export async function makeTrees(work: string, names: readonly TreeName[]): Promise<Tree[]> {
  mkdirSync(work, { recursive: true });
  const big = join(work, `big-${BIG_MIB}MiB.bin`);
  await run(["dd", "if=/dev/urandom", `of=${big}`, "bs=1M", `count=${BIG_MIB}`, "status=none"]);
  const trees: Tree[] = [];
  for (const name of names) {
    const path = join(work, `tree-${name}`);
    mkdirSync(path, { recursive: true });
    await (name === "synthetic" ? makeSynthetic(path) : makeReal(path));
    linkSync(big, join(path, "big.bin"));
    trees.push({ name, path, shape: shapeOf(path) });
  }
  return trees;
}

function makeSynthetic(dir: string): void {
  const random = seededRandom(1);
  for (let d = 0; d < 100; d++) mkdirSync(join(dir, `d${d}`));
  for (let f = 0; f < 9349; f++) {
    const size = 1024 + Math.floor(random() * 48 * 1024);
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i += 4096) data[i] = Math.floor(random() * 256);
    writeFileSync(join(dir, `d${f % 100}`, `f${f}`), data);
  }
}

async function makeReal(dir: string): Promise<void> {
  const copied = REAL_SOURCES.filter((source) => existsSync(source) && lstatSync(source).isDirectory());
  if (copied.length === 0) throw new Error(`none of ${REAL_SOURCES.join(", ")} is a directory here: no real tree to copy`);
  for (const source of copied) {
    const into = join(dir, dirname(source));
    mkdirSync(into, { recursive: true });
    await run(["cp", "-a", source, into]);
  }
}

/** Regular files, directories (the top one not counted) and symbolic links of a tree, and its files' sizes. */
export function shapeOf(dir: string): Shape {
  const sizes: number[] = [];
  let directories = 0;
  let links = 0;
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) {
        directories++;
        walk(path);
      } else if (entry.isFile()) sizes.push(lstatSync(path).size);
      else if (entry.isSymbolicLink()) links++;
    }
  };
  walk(dir);
  return {
    files: sizes.length, directories, links, medianFileBytes: median(sizes),
    under4KiB: sizes.filter((s) => s < 4096).length, bytes: sizes.reduce((a, b) => a + b, 0),
  };
}

/** A tree's shape in one line. */
export function describe(tree: Tree): string {
  const s = tree.shape;
  const n = (x: number) => x.toLocaleString("en-US");
  return `${tree.name}: ${n(s.files)} files (${Math.round((100 * s.under4KiB) / s.files)}% under 4 KiB, median ${(s.medianFileBytes / 1024).toFixed(1)} KiB), ` +
    `${n(s.directories)} directories, ${n(s.links)} symbolic links, ${(s.bytes / 1e6).toFixed(0)} MB`;
}
