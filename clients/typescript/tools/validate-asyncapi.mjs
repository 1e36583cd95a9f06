// Validate an AsyncAPI document with the AsyncAPI project's own parser (@asyncapi/parser).
// Prints one JSON line: {"file", "asyncapi", "channels", "operations", "diagnostics": [...]};
// exits 1 when the parser finds an error (or, with --strict, anything at all).
import { Parser, fromFile } from "@asyncapi/parser";

const args = process.argv.slice(2);
const strict = args.includes("--strict");
const file = args.find((a) => !a.startsWith("--"));
if (!file) {
  console.error("usage: validate-asyncapi.mjs FILE [--strict]");
  process.exit(2);
}
const SEVERITY = ["error", "warning", "information", "hint"];
const { document, diagnostics } = await fromFile(new Parser(), file).parse();
const found = diagnostics.map((d) => ({
  severity: SEVERITY[d.severity] ?? String(d.severity),
  code: d.code,
  message: d.message,
  path: d.path.join("/"),
}));
console.log(
  JSON.stringify({
    file,
    asyncapi: document ? document.version() : null,
    channels: document ? document.channels().length : 0,
    operations: document ? document.operations().length : 0,
    diagnostics: found,
  }),
);
const failed = !document || found.some((d) => d.severity === "error" || strict);
process.exit(failed ? 1 : 0);
