/**
 * Builds dist/s3backer: one executable holding the Bun runtime and our code (bytecode-compiled,
 * minified), needing nothing at run time but libc and /dev/fuse; and its man page, dist/s3backer.1.
 * `bun build.ts --all` also builds dist/s3backer-linux-x64-musl and dist/s3backer-linux-arm64.
 */
import { rmSync, writeFileSync } from "node:fs";
import { manPage } from "./src/cli/man-page.ts";

const targets: [outfile: string, target: Bun.Build.CompileTarget | undefined][] = [["dist/s3backer", undefined]];
if (process.argv.includes("--all")) {
  targets.push(["dist/s3backer-linux-x64-musl", "bun-linux-x64-musl"], ["dist/s3backer-linux-arm64", "bun-linux-arm64"]);
}

for (const [outfile, target] of targets) {
  rmSync(outfile, { force: true });
  const result = await Bun.build({
    entrypoints: ["src/main.ts", "src/fuse/device-reader.worker.ts", "src/http/http.worker.ts", "src/memory/fresh-buffers.worker.ts"],
    compile: target ? { outfile, target } : { outfile },
    minify: true,
    bytecode: true,
    target: "bun",
    format: "esm",
  });
  if (!result.success) {
    for (const message of result.logs) console.error(message);
    process.exit(1);
  }
  console.log(`built ${outfile}`);
}
writeFileSync("dist/s3backer.1", manPage());
console.log("built dist/s3backer.1");
