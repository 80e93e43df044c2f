// CI check of the client models: fresh (gen.mjs --check), the TypeScript compiles under
// `tsc --strict`, and the Swift parses without an error node under tree-sitter-swift (there
// is no Swift compiler on these machines, so a real Swift grammar is the check).
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const run = (cmd, args) => execFileSync(cmd, args, { stdio: "inherit", cwd: here });

run(process.execPath, ["gen.mjs", "--check"]);
run(process.execPath, [
  require.resolve("typescript/bin/tsc"),
  "--strict", "--noEmit", "--target", "es2022", "--module", "es2022",
  join(here, "..", "typescript", "src", "models.ts"),
]);

const Parser = require("tree-sitter");
const Swift = require("tree-sitter-swift");
const parser = new Parser();
parser.setLanguage(Swift);
const swiftFile = join(here, "swift", "Sources", "SwitchboardModels", "Models.swift");
const source = readFileSync(swiftFile, "utf8");
// The native binding reads big inputs through a callback; hand it the text in chunks.
const tree = parser.parse((index) => source.slice(index, index + 4096));
const errors = [];
(function walk(node) {
  if (errors.length > 10) return;
  if (node.type === "ERROR" || node.isMissing) errors.push(`${node.type} at ${node.startPosition.row + 1}:${node.startPosition.column + 1}`);
  else if (node.hasError) for (const child of node.children) walk(child);
})(tree.rootNode);
if (errors.length) {
  console.error(`Models.swift does not parse as Swift: ${errors.join("; ")}`);
  process.exit(1);
}
// A grammar that accepted anything would prove nothing: a broken file must be refused.
if (!parser.parse("public struct A: Codable { let x: Int\n").rootNode.hasError) {
  console.error("tree-sitter-swift accepted a broken file");
  process.exit(1);
}
console.log("client models: fresh, tsc --strict clean, Swift parses");
