/**
 * Model-based concurrency tests through the real mount: several client threads issue random reads,
 * whole and partial writes, zero writes, punch-hole and fsync, buffered and O_DIRECT, and every
 * read is judged against what the disk may legally hold; then the mount is killed with -9 and a
 * fresh mount must hold every write an fsync acknowledged (see helpers/model.ts). A few seconds
 * per case here; bench/consistency-soak.ts runs them as long as asked.
 *
 * The seed is printed; MODEL_SEED=N replays one, MODEL_SECONDS=S runs longer.
 */
import { describe, expect, test } from "bun:test";
import { MODEL_CASES, runModelCase } from "../helpers/model.ts";
import { embeddedSuite } from "../helpers/suite.ts";

const { server, workDir } = embeddedSuite();
const SECONDS = Number(process.env.MODEL_SECONDS ?? 4);

describe("model-based concurrency through the mount", () => {
  for (const c of MODEL_CASES) {
    test(c.name, async () => {
      const seed = Number(process.env.MODEL_SEED ?? Math.floor(Math.random() * 2 ** 31));
      console.log(`model test "${c.name}": seed ${seed} (replay with MODEL_SEED=${seed})`);
      const dir = workDir("model");
      const { run, fired, check } = await runModelCase(server, c, seed, SECONDS, dir);
      console.log(`  ${JSON.stringify(run.counts)}; faults fired: ${JSON.stringify(fired)}`);
      expect(run.failures).toEqual([]);
      // Real work was done (the slowest case, late answers with the cache off, does ~40 reads in 4 s).
      expect(run.counts.read ?? 0).toBeGreaterThan(20);
      expect(run.counts.write ?? 0).toBeGreaterThan(10);
      expect(check.failures).toEqual([]);
      // Each fault the case injects happened.
      for (const [fault, times] of Object.entries(fired)) expect({ fault, fired: times > 0 }).toEqual({ fault, fired: true });
    }, 120_000);
  }
});
