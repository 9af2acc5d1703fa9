/** The runtime adapter in use. */
import type { Runtime } from "./runtime.ts";

async function load(): Promise<Runtime> {
  if (typeof (globalThis as { Bun?: unknown }).Bun !== "undefined") return (await import("./bun.ts")).bunRuntime;
  throw new Error("this runtime is not supported yet: run with Bun (Deno support is planned)");
}

export const runtime: Runtime = await load();
