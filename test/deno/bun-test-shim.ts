/**
 * Enough of `bun:test` for the unit tests to run under `deno test` (the import map in deno.json
 * points `bun:test` here): test, test.each, describe, the hooks, and the matchers they use.
 */
import { isDeepStrictEqual } from "node:util";

declare const Deno: { test(name: string, options: { sanitizeOps: boolean; sanitizeResources: boolean }, fn: () => Promise<void>): void };

type Fn = () => unknown;
const hooks = { beforeEach: [] as Fn[], afterEach: [] as Fn[], afterAll: [] as Fn[] };
const prefix: string[] = [];
let afterAllRegistered = false;

export function test(name: string, fn: Fn): void {
  const full = [...prefix, name].join(" > ");
  Deno.test(full, { sanitizeOps: false, sanitizeResources: false }, async () => {
    for (const h of hooks.beforeEach) await h();
    try {
      await fn();
    } finally {
      for (const h of hooks.afterEach) await h();
    }
  });
  if (!afterAllRegistered) {
    afterAllRegistered = true;
    // Registered after the first test, so it runs once every test of the file has.
    queueMicrotask(() =>
      Deno.test("(after all)", { sanitizeOps: false, sanitizeResources: false }, async () => {
        for (const h of hooks.afterAll) await h();
      }),
    );
  }
}

test.each = <T extends unknown[]>(rows: readonly T[]) => (name: string, fn: (...args: T) => unknown) => {
  rows.forEach((row, i) => test(`${name.replace(/%p/g, () => JSON.stringify(row[0]))} #${i}`, () => fn(...(Array.isArray(row) ? row : [row]) as T)));
};

export function describe(name: string, body: () => void): void {
  prefix.push(name);
  body();
  prefix.pop();
}

export const beforeEach = (fn: Fn) => hooks.beforeEach.push(fn);
export const afterEach = (fn: Fn) => hooks.afterEach.push(fn);
export const afterAll = (fn: Fn) => hooks.afterAll.push(fn);

class Matchers {
  constructor(
    private readonly actual: unknown,
    private readonly negate = false,
  ) {}

  get not(): Matchers {
    return new Matchers(this.actual, !this.negate);
  }

  private check(ok: boolean, what: string, expected?: unknown): void {
    if (ok === this.negate) {
      throw new Error(`expected ${fmt(this.actual)} ${this.negate ? "not " : ""}${what}${expected === undefined ? "" : ` ${fmt(expected)}`}`);
    }
  }

  toBe(e: unknown) { this.check(Object.is(this.actual, e), "to be", e); }
  toEqual(e: unknown) { this.check(equal(this.actual, e), "to equal", e); }
  toBeUndefined() { this.check(this.actual === undefined, "to be undefined"); }
  toBeNull() { this.check(this.actual === null, "to be null"); }
  toBeInstanceOf(c: new (...a: never[]) => unknown) { this.check(this.actual instanceof c, "to be an instance of", c.name); }
  toBeGreaterThan(n: number) { this.check((this.actual as number) > n, "to be greater than", n); }
  toBeGreaterThanOrEqual(n: number) { this.check((this.actual as number) >= n, "to be at least", n); }
  toBeLessThan(n: number) { this.check((this.actual as number) < n, "to be less than", n); }
  toBeLessThanOrEqual(n: number) { this.check((this.actual as number) <= n, "to be at most", n); }
  toBeDefined() { this.check(this.actual !== undefined, "to be defined"); }
  toBeTruthy() { this.check(Boolean(this.actual), "to be truthy"); }
  toContain(e: unknown) { this.check((this.actual as string | unknown[]).includes(e as never), "to contain", e); }
  toContainEqual(e: unknown) { this.check((this.actual as unknown[]).some((a) => equal(a, e)), "to contain an equal of", e); }
  toStartWith(prefix: string) { this.check(String(this.actual).startsWith(prefix), "to start with", prefix); }
  toMatch(re: RegExp | string) { this.check(matches(String(this.actual), re), "to match", String(re)); }
  /** Throws; with `message`, an error whose message contains it (a string) or matches it (a RegExp). */
  toThrow(message?: RegExp | string) {
    let thrown: { error: unknown } | undefined;
    try {
      (this.actual as () => unknown)();
    } catch (error) {
      thrown = { error };
    }
    const ok = thrown !== undefined && (message === undefined || matches((thrown.error as Error)?.message ?? String(thrown.error), message));
    this.check(ok, "to throw", message === undefined ? undefined : String(message));
  }
  toMatchObject(e: Record<string, unknown>) {
    const a = this.actual as Record<string, unknown>;
    this.check(Object.entries(e).every(([k, v]) => isDeepStrictEqual(a?.[k], v)), "to match", e);
  }
}

const matches = (text: string, pattern: RegExp | string) => (typeof pattern === "string" ? text.includes(pattern) : pattern.test(text));

/** An expected value that matches a family of values (`expect.stringContaining`). */
class Asymmetric {
  constructor(
    readonly description: string,
    readonly accepts: (value: unknown) => boolean,
  ) {}
  toJSON(): string {
    return this.description;
  }
}

/** Deep equality where bytes are bytes: a Buffer equals a Uint8Array with the same contents (as in bun:test). */
function equal(a: unknown, b: unknown): boolean {
  if (b instanceof Asymmetric) return b.accepts(a);
  if (a instanceof Uint8Array && b instanceof Uint8Array) return a.length === b.length && Buffer.compare(a, b) === 0;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => equal(x, b[i]));
  const plain = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype;
  if (plain(a) && plain(b)) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length && keys.every((k) => k in b && equal(a[k], b[k]));
  }
  return isDeepStrictEqual(a, b);
}

function fmt(v: unknown): string {
  if (v instanceof Uint8Array) return `Uint8Array(${v.length})`;
  try {
    return JSON.stringify(v)?.slice(0, 200) ?? String(v);
  } catch {
    return String(v);
  }
}

export const expect = Object.assign((actual: unknown) => new Matchers(actual), {
  stringContaining: (part: string) => new Asymmetric(`a string containing ${JSON.stringify(part)}`, (v) => typeof v === "string" && v.includes(part)),
});
