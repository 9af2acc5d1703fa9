/**
 * Builds dist/s3backer: one executable holding the Bun runtime and our code (bytecode-compiled,
 * minified), needing nothing at run time but libc and /dev/fuse; and its man page, dist/s3backer.1.
 */
import { rmSync, writeFileSync } from "node:fs";
import { manPage } from "./src/cli/man-page.ts";

const outfile = "dist/s3backer";
rmSync(outfile, { force: true });
const result = await Bun.build({
  entrypoints: ["src/main.ts", "src/fuse/device-reader.worker.ts"],
  compile: { outfile },
  minify: true,
  bytecode: true,
  target: "bun",
  format: "esm",
});
if (!result.success) {
  for (const message of result.logs) console.error(message);
  process.exit(1);
}
writeFileSync("dist/s3backer.1", manPage());
console.log(`built ${outfile} and dist/s3backer.1`);
