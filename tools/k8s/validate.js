// Validates Kubernetes manifests offline against the Kubernetes API schemas bundled in
// kubernetes-models (types, required fields, enums, formats; unknown fields are not
// flagged, as kubeconform without -strict).
//   node tools/k8s/validate.js deploy/*.yaml
// Exits 1 and prints file, document, kind/name and the schema error for every problem.
"use strict";
const fs = require("fs");
const YAML = require("yaml");

function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const dir = group === "" ? version : `${group}/${version}`;
  try {
    return require(`kubernetes-models/${dir}/${kind}`)[kind];
  } catch (e) {
    return null;
  }
}

let problems = 0;
let checked = 0;
for (const file of process.argv.slice(2)) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"));
  docs.forEach((doc, i) => {
    const where = `${file}: document ${i + 1}`;
    if (doc.errors.length > 0) {
      for (const e of doc.errors) console.log(`${where}: YAML: ${e.message}`);
      problems += doc.errors.length;
      return;
    }
    const obj = doc.toJS();
    if (obj === null || obj === undefined) return;
    const name = `${obj.kind}/${(obj.metadata || {}).name}`;
    if (!obj.apiVersion || !obj.kind) {
      console.log(`${where}: apiVersion and kind are required`);
      problems++;
      return;
    }
    if (obj.kind === "Kustomization") {  // not an API object: check what it names exists
      const dir = require("path").dirname(file);
      const named = (obj.resources || []).concat(
          ...(obj.configMapGenerator || []).map((g) => g.files || []));
      for (const f of named) {
        if (!fs.existsSync(require("path").join(dir, f))) {
          console.log(`${where}: ${name}: names ${f}, which does not exist`);
          problems++;
        }
      }
      checked++;
      return;
    }
    const Model = modelFor(obj.apiVersion, obj.kind);
    if (Model === null) {
      console.log(`${where}: ${name}: no schema for ${obj.apiVersion} ${obj.kind}`);
      problems++;
      return;
    }
    try {
      new Model(obj).validate();
      checked++;
    } catch (e) {
      console.log(`${where}: ${name}: ${e.message}`);
      problems++;
    }
  });
}
console.log(`k8s validate: ${checked} objects valid, ${problems} problems`);
process.exit(problems === 0 && checked > 0 ? 0 : 1);
