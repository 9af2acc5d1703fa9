/** The runtime adapter in use. */
import type { Runtime } from "./runtime.ts";

async function load(): Promise<Runtime> {
  if (typeof (globalThis as { Bun?: unknown }).Bun !== "undefined") return (await import("./bun.ts")).bunRuntime;
  if (typeof (globalThis as { Deno?: unknown }).Deno !== "undefined") return (await import("./deno.ts")).denoRuntime;
  throw new Error("this runtime is not supported: run with Bun or Deno");
}

export const runtime: Runtime = await load();
