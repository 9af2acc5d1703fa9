/**
 * The end of a mount: what it still holds is stored however long storage stays away, as the
 * kernel's page cache or an NFS hard mount keeps dirty data until it is written. Each attempt has
 * the store's own retries inside it (up to --maxRetryPause per request); a failed one is logged
 * with what is left, its error and when the next starts, and attempts go on, further and further
 * apart, until one succeeds. Only giving up (a second stop signal, or --unmountTimeout) ends them first.
 */
import { messageOf } from "../errors.ts";
import { log } from "../log.ts";

/** The first pause between failed attempts, doubling up to the last. */
const FIRST_PAUSE_MS = 1000;
const MAX_PAUSE_MS = 60_000;

/**
 * Runs `attempt` (`what` it does, for the log) until it succeeds: resolves undefined then, or, once
 * `giveUp` is aborted (its reason a phrase for the log, such as "SIGTERM again"), with that reason.
 * `left` says what is not done yet ("128 blocks not stored yet"); `howToGiveUp` is said once, at
 * the first failure.
 */
export async function untilStored(what: string, attempt: () => Promise<void>, left: () => string, giveUp: AbortSignal, howToGiveUp: string): Promise<string | undefined> {
  let pause = FIRST_PAUSE_MS;
  for (let failures = 0; ; failures++) {
    const tried = await unlessGivenUp(attempt(), giveUp);
    if (tried.ended === "done") return undefined;
    if (tried.ended === "gave up") return tried.why;
    if (failures === 0) log.warn(`${what} failed: trying again until it succeeds (${howToGiveUp} gives up)`);
    log.warn(`${left()} (${messageOf(tried.error)}): trying again in ${pause / 1000} s`);
    const waited = await unlessGivenUp(new Promise<void>((resolve) => setTimeout(resolve, pause)), giveUp);
    if (waited.ended === "gave up") return waited.why;
    pause = Math.min(pause * 2, MAX_PAUSE_MS);
  }
}

type Outcome = { ended: "done" } | { ended: "failed"; error: unknown } | { ended: "gave up"; why: string };

/** `work`'s outcome, unless it is given up on first (then `work` goes on, unwatched). */
function unlessGivenUp(work: Promise<void>, giveUp: AbortSignal): Promise<Outcome> {
  const why = () => (typeof giveUp.reason === "string" ? giveUp.reason : "given up");
  if (giveUp.aborted) {
    work.catch(() => {});
    return Promise.resolve({ ended: "gave up", why: why() });
  }
  return new Promise((resolve) => {
    const onAbort = () => resolve({ ended: "gave up", why: why() });
    giveUp.addEventListener("abort", onAbort, { once: true });
    work
      .then(() => resolve({ ended: "done" }), (error) => resolve({ ended: "failed", error }))
      .finally(() => giveUp.removeEventListener("abort", onAbort));
  });
}
