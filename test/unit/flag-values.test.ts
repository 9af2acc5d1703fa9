/**
 * Drop-in value by value: each form of test/helpers/flag-forms.ts parses to its value here, and
 * each refused form is named as typed, in each spelling (`--x=v`, `-o x=v`, `FILE:LINE: --x=v`).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "../../src/cli/parse.ts";
import { buildConfig } from "../../src/config/build-config.ts";
import { tempDir } from "../helpers/data.ts";
import { ENV, FORMS, REFUSED_FORMS } from "../helpers/flag-forms.ts";

const dir = tempDir("flag-values");
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const parse = (args: string[]) => buildConfig(parseArgs(["--size=1T", ...args, "bucket", "mnt"]), { uid: 0, gid: 0 }, ENV);

const key = (args: string[]) => args.at(-1)!;

describe("each form parses to its value", () => {
  test.each(FORMS.map((form) => [form.args.join(" "), form] as const))("%s", (_, form) => {
    expect(form.ours(parse(form.args))).toBe(form.is);
  });
});

describe("each refused form is one line naming it as typed: --x=v, -o x=v, FILE:LINE: --x=v", () => {
  test.each(REFUSED_FORMS.map(([args, why]) => [args.join(" "), args, why] as const))("%s", (_, args, why) => {
    const typed = key(args);
    expect(() => parse(args)).toThrow(new RegExp(`^${escape(typed)}:? .*${why.source}`));
    const option = `-o ${typed.slice(2)}`;
    expect(() => parse([...args.slice(0, -1), "-o", typed.slice(2)])).toThrow(new RegExp(`^${escape(option)}:? .*${why.source}`));
    const file = join(dir, "conf");
    writeFileSync(file, `# from upstream\n${args.join("\n")}\n`);
    expect(() => parse(["-F", file])).toThrow(new RegExp(`^${escape(`${file}:${args.length + 1}: ${typed}`)}:? .*${why.source}`));
  });
});

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

test("what upstream accepts and ignores or clamps is accepted here with one warning line", () => {
  const warnings = (...args: string[]) => parse(args).warnings;
  expect(warnings("--blockCacheSize=10", "--blockCacheMaxDirty=20")).toEqual(["--blockCacheMaxDirty=20: more than --blockCacheSize=10: at most 10 blocks are dirty"]);
  expect(warnings("--blockCacheSize=0", "--readAhead=8")).toEqual(["--readAhead=8: no effect with the block cache off (--blockCacheSize=0)"]);
  expect(warnings("--blockCacheNoVerify")).toEqual(["--blockCacheNoVerify: no effect without --blockCacheFile"]);
  expect(warnings("--sse-key-id=k")).toEqual(["--sse-key-id=k: ignored without --sse=aws:kms"]);
  expect(warnings("--password=x", "--keyLength=32")).toEqual(["--password=x, --keyLength=32: ignored without --encrypt"]);
  expect(warnings("--blockCacheSize=10", "--blockCacheNumProtected=20")).toEqual(["--blockCacheNumProtected=20: more than --blockCacheSize=10: every cached block is protected"]);
  expect(warnings("--blockSize=1G")[0]).toStartWith("--blockSize=1G: each block read, written or cached takes 1G of memory");
  const test = buildConfig(parseArgs(["--test", "--size=1M", "--compress", "--encrypt", "--password=x", "blocks", "mnt"]), { uid: 0, gid: 0 }, {});
  expect(test.warnings).toEqual(["--compress, --encrypt: no effect in --test mode (blocks are stored as they are)"]);
  expect([test.codec.compression, test.codec.encryption]).toEqual([undefined, undefined]);
  expect(warnings("-o", "auto_cache,noforget,clone_fd,max_threads=10")).toEqual(["-o auto_cache,noforget,clone_fd,max_threads=10: accepted, no effect here (libfuse options this program has no use for)"]);
  expect(warnings("--blockSize=4k")).toEqual([]);
});

test("--region: virtual-hosted URLs for AWS as upstream, path-style (with a warning) where those would not work", () => {
  const url = (...args: string[]) => {
    const c = parse(args);
    return [c.s3.vhost, c.s3.baseURL, c.warnings.length];
  };
  expect(url()).toEqual([false, "https://s3.amazonaws.com/", 0]);
  expect(url("--region=eu-west-1")).toEqual([true, "https://s3.eu-west-1.amazonaws.com/", 0]);
  expect(url("--region=us-east-1")).toEqual([true, "https://s3.amazonaws.com/", 0]);
  expect(url("--region=eu-west-1", "--no-vhost")).toEqual([false, "https://s3.eu-west-1.amazonaws.com/", 0]);
  expect(url("--region=eu-west-1", "--baseURL=http://minio:9000/")).toEqual([false, "http://minio:9000/", 1]);
  expect(url("--region=eu-west-1", "--baseURL=http://minio:9000/", "--vhost")).toEqual([true, "http://minio:9000/", 0]);
  expect(url("--vhost", "--no-vhost")[0]).toBe(false); // the last one given wins, as upstream
  expect(url("--no-vhost", "--vhost")[0]).toBe(true);
  const dotted = buildConfig(parseArgs(["--size=1M", "--region=eu-west-1", "my.bucket", "mnt"]), { uid: 0, gid: 0 }, {});
  expect([dotted.s3.vhost, dotted.warnings[0]]).toEqual([false, expect.stringContaining("the bucket name has dots")]);
});
