#!/usr/bin/env node
// Validates a .glb/.gltf file with the Khronos glTF-Validator (npm package
// "gltf-validator"), prints the report as JSON and exits 1 if it has errors
// (2 if the file cannot be read or validated at all).
//
// Usage: node tools/gltf_validate.js FILE
// The package is looked up in $LANGNAV_NODE_MODULES (a node_modules directory), then in
// <repo>/.node_modules_root/node_modules (where tools/setup.sh installs it), then by
// Node's own resolution.
"use strict";
const fs = require("fs");
const path = require("path");

function loadValidator() {
  const candidates = [];
  if (process.env.LANGNAV_NODE_MODULES) {
    candidates.push(path.join(process.env.LANGNAV_NODE_MODULES, "gltf-validator"));
  }
  candidates.push(path.join(__dirname, "..", ".node_modules_root", "node_modules", "gltf-validator"));
  for (const c of candidates) {
    if (fs.existsSync(c)) return require(c);
  }
  try {
    return require("gltf-validator");
  } catch (e) {
    console.error("gltf_validate: the npm package gltf-validator was not found in " +
      candidates.join(", ") + " nor on Node's path; install it with\n" +
      "  npm install --prefix .node_modules_root gltf-validator");
    process.exit(2);
  }
}

const file = process.argv[2];
if (!file) {
  console.error("usage: node tools/gltf_validate.js FILE");
  process.exit(2);
}
let bytes;
try {
  bytes = new Uint8Array(fs.readFileSync(file));
} catch (e) {
  console.error(`gltf_validate: cannot read ${file}: ${e.message}`);
  process.exit(2);
}
loadValidator().validateBytes(bytes, { uri: path.basename(file), maxIssues: 100 }).then(
  (report) => {
    console.log(JSON.stringify(report, null, 1));
    process.exit(report.issues.numErrors > 0 ? 1 : 0);
  },
  (error) => {
    console.error(`gltf_validate: ${file} could not be validated: ${error}`);
    process.exit(2);
  });
