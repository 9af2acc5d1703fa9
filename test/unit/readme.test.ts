import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { flagTableMarkdown } from "../../src/cli/flag-table.ts";

test("the README's flag table is the one made from src/cli/flags.ts", () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const table = readme.split("<!-- flags:start -->\n")[1]?.split("\n<!-- flags:end -->")[0];
  // On a mismatch, regenerate with: bun src/cli/flag-table.ts
  expect(table).toBe(flagTableMarkdown());
});
