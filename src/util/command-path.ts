import { spawnSync } from "node:child_process";

/** Where a program is on the PATH, or undefined. */
export function commandPath(name: string): string | undefined {
  return spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).stdout.trim() || undefined;
}
