/** Where credentials come from, in order. (The EC2 metadata service: test/component/credentials.test.ts.) */
import { afterEach, expect, test } from "bun:test";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { credentialSource, envRegion } from "../../src/object/s3/credentials.ts";
import { tempDir } from "../helpers/data.ts";

const homes: string[] = [];
afterEach(() => {
  for (const h of homes.splice(0)) rmSync(h, { recursive: true, force: true });
});

function home(files: Record<string, string> = {}): string {
  const h = tempDir("home");
  homes.push(h);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(h, name, ".."), { recursive: true });
    writeFileSync(join(h, name), text);
  }
  return h;
}

const none = { accessId: undefined, accessKey: undefined, accessFile: undefined, accessEC2IAM: undefined };

test("flags win over everything", async () => {
  const h = home({ ".s3backer_passwd": "FILEID:filekey\n" });
  const s = credentialSource({ ...none, accessId: "FLAG", accessKey: "flagkey" }, { AWS_ACCESS_KEY_ID: "ENV", AWS_SECRET_ACCESS_KEY: "e" }, h);
  expect(await s.get()).toEqual({ accessKeyId: "FLAG", secretAccessKey: "flagkey" });
});

test("~/.s3backer_passwd next: first line, or the line of --accessId", async () => {
  const h = home({ ".s3backer_passwd": "# comment\nONE:k1\nTWO:k2:with:colons\n" });
  expect(await credentialSource(none, {}, h).get()).toEqual({ accessKeyId: "ONE", secretAccessKey: "k1" });
  expect(await credentialSource({ ...none, accessId: "TWO" }, {}, h).get()).toEqual({ accessKeyId: "TWO", secretAccessKey: "k2:with:colons" });
  expect(() => credentialSource({ ...none, accessId: "THREE" }, {}, h)).toThrow(/no key for access ID 'THREE'/);
  expect(() => credentialSource({ ...none, accessFile: join(h, "nope") }, {}, h)).toThrow(/no such file/);
});

test("then the AWS environment variables, with a session token", async () => {
  const s = credentialSource(none, { AWS_ACCESS_KEY_ID: "ENV", AWS_SECRET_ACCESS_KEY: "e", AWS_SESSION_TOKEN: "tok" }, home());
  expect(await s.get()).toEqual({ accessKeyId: "ENV", secretAccessKey: "e", sessionToken: "tok" });
  expect(s.origin).toBe("AWS_ACCESS_KEY_ID");
});

test("then AWS_PROFILE in ~/.aws/credentials or ~/.aws/config; region from env or profile", async () => {
  const h = home({
    ".aws/credentials": "[default]\naws_access_key_id = DEF\naws_secret_access_key = d\n[work]\naws_access_key_id=WORK\naws_secret_access_key=w\n",
    ".aws/config": "[profile cfg]\naws_access_key_id = CFG\naws_secret_access_key = c\nregion = eu-west-3\n",
  });
  expect(await credentialSource(none, {}, h).get()).toEqual({ accessKeyId: "DEF", secretAccessKey: "d" });
  expect(await credentialSource(none, { AWS_PROFILE: "work" }, h).get()).toEqual({ accessKeyId: "WORK", secretAccessKey: "w" });
  expect(await credentialSource(none, { AWS_PROFILE: "cfg" }, h).get()).toEqual({ accessKeyId: "CFG", secretAccessKey: "c" });
  expect(() => credentialSource(none, { AWS_PROFILE: "missing" }, h)).toThrow(/AWS_PROFILE=missing/);
  expect(envRegion({ AWS_PROFILE: "cfg" }, h)).toBe("eu-west-3");
  expect(envRegion({ AWS_REGION: "ap-south-1", AWS_DEFAULT_REGION: "x" }, h)).toBe("ap-south-1");
});

test("nothing at all: unsigned requests", async () => {
  const s = credentialSource(none, {}, home());
  expect(await s.get()).toBeUndefined();
});
