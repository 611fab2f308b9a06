// Bundles the page's third-party libraries into cdp/web/static/vendor/ (ES modules, minified),
// with their licenses and a manifest of what went into each bundle (name@version, as the
// lockfile pins them). The bundles are committed: cdp is built and run without npm.
//   cd web && npm ci && npm run build
import { build } from "esbuild";
import { copyFileSync, readFileSync, readdirSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "cdp", "web", "static", "vendor");
const entries = { codemirror: "src/codemirror.js", chartjs: "src/chartjs.js", cytoscape: "src/cytoscape.js" };

// node_modules/<name> or node_modules/@scope/<name> of a bundled input file
function packageOf(path) {
  const match = path.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  return match ? match[1] : null;
}

mkdirSync(out, { recursive: true });
const manifest = {};
const used = new Map();
for (const [name, entry] of Object.entries(entries)) {
  const result = await build({
    entryPoints: [join(here, entry)], bundle: true, format: "esm", minify: true, target: "es2020",
    legalComments: "none", metafile: true, write: false, absWorkingDir: here,
  });
  const packages = [...new Set(Object.keys(result.metafile.inputs).map(packageOf).filter(Boolean))].sort();
  manifest[name] = {};
  for (const pkg of packages) {
    const meta = JSON.parse(readFileSync(join(here, "node_modules", pkg, "package.json"), "utf8"));
    manifest[name][pkg] = meta.version;
    used.set(pkg, meta);
  }
  const banner = `/* ${name}.js: ${packages.map((p) => `${p}@${manifest[name][p]}`).join(", ")}; ` +
    "licenses in LICENSES.txt; built by web/build.mjs from web/package-lock.json */\n";
  writeFileSync(join(out, `${name}.js`), banner + result.outputFiles[0].text);
}

let notices = "The third-party code bundled in this folder, with its licenses.\n";
for (const [pkg, meta] of [...used.entries()].sort()) {
  const dir = join(here, "node_modules", pkg);
  const file = readdirSync(dir).find((f) => /^licen[cs]e/i.test(f));
  if (!file) throw new Error(`${pkg} has no license file`);
  notices += `\n${"=".repeat(78)}\n${pkg}@${meta.version} (${meta.license})\n${"=".repeat(78)}\n\n` +
    readFileSync(join(dir, file), "utf8").trim() + "\n";
}
writeFileSync(join(out, "LICENSES.txt"), notices);
// Cytoscape.js adds a <style> element for this one rule unless an element with its id exists; the
// page's Content-Security-Policy refuses inline styles, so index.html links this file under that id.
writeFileSync(join(out, "cytoscape.css"), "/* the rule Cytoscape.js would add inline (web/build.mjs) */\n" +
  ".__________cytoscape_container { position: relative; }\n");
writeFileSync(join(out, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
// For the tests only (never shipped): axe-core, the accessibility checker the browser tests run
// in every view (tests/web/test_web_browser.py), with its license.
const axe = join(here, "..", "tests", "web", "vendor");
const axeMeta = JSON.parse(readFileSync(join(here, "node_modules", "axe-core", "package.json"), "utf8"));
mkdirSync(axe, { recursive: true });
copyFileSync(join(here, "node_modules", "axe-core", "axe.min.js"), join(axe, "axe.min.js"));
copyFileSync(join(here, "node_modules", "axe-core", "LICENSE"), join(axe, "axe-core.LICENSE"));
writeFileSync(join(axe, "manifest.json"), JSON.stringify({ "axe-core": axeMeta.version }, null, 2) + "\n");

console.log(JSON.stringify(manifest, null, 2));
