// Validate one glTF/GLB file with the Khronos glTF validator and print its
// JSON report on stdout.  Usage: node validate_gltf.js <file> <validator dir>
"use strict";
const fs = require("fs");
const path = require("path");

const [file, validatorDir] = process.argv.slice(2);
const validator = require(path.resolve(validatorDir));
const data = new Uint8Array(fs.readFileSync(file));
validator
  .validateBytes(data, { uri: path.basename(file), maxIssues: 200 })
  .then((report) => {
    process.stdout.write(JSON.stringify(report));
  })
  .catch((error) => {
    process.stderr.write(String(error) + "\n");
    process.exit(2);
  });
