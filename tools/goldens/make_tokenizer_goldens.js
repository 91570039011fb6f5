#!/usr/bin/env node
// Writes tokenizer goldens with the Node binding of Hugging Face tokenizers (npm package
// `tokenizers`, same Rust core as the Python one), in the format of
// tools/goldens/make_tokenizer_goldens.py, for machines without Python tokenizers.
//
//   (cd /tmp/tok && npm install tokenizers@0.23.2)
//   NODE_PATH=/tmp/tok/node_modules node tools/goldens/make_tokenizer_goldens.js \
//       --out_dir tests/golden/tokenizer
//
// It writes the goldens of every family of tools/goldens/families.json for both strings
// files (the second only where the family says generated): NAME.golden.json (tests/golden/tokenizer/strings.json, each case with
// its text) and NAME.generated.golden.json (generated_strings.json, cases by index:
// the text is the strings file's entry, and values equal to their usual default are
// left out (see compact()), which keeps the files small).
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const VERSION = require('tokenizers/package.json').version;

async function golden(tokenizerRel, stringsRel, withText) {
  const tokenizer = Tokenizer.fromFile(path.join(REPO_ROOT, tokenizerRel));
  const strings = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, stringsRel), 'utf8')).strings;
  const prefix = (await tokenizer.encode('', null, { addSpecialTokens: true })).getIds();
  const cases = [];
  for (const text of strings) {
    const ids = (await tokenizer.encode(text, null, { addSpecialTokens: true })).getIds();
    const plain = (await tokenizer.encode(text, null, { addSpecialTokens: false })).getIds();
    const full = {
      ids, ids_no_special: plain,
      decoded: await tokenizer.decode(ids, false),
      decoded_no_special: await tokenizer.decode(plain, false),
      decoded_skip_special: await tokenizer.decode(ids, true),
    };
    cases.push(withText ? { text, ...full } : compact(text, full, prefix));
  }
  return { tokenizer: tokenizerRel, tokenizers_version: VERSION,
           tokenizers_binding: 'node', strings: stringsRel,
           text_from_strings: !withText, ids_prefix: prefix, cases };
}

// Cases by index leave out what equals the value it is usually equal to (the rule of
// tokenizer_golden_test.cc): ids_no_special = ids without the golden's ids_prefix (the
// ids a template puts before the empty text) when they start with it, else ids;
// decoded_no_special = the text; decoded_skip_special = decoded_no_special;
// decoded = decoded_skip_special.
function compact(text, c, prefix) {
  const out = { ids: c.ids };
  const starts = prefix.every((id, i) => c.ids[i] === id);
  const plain = starts ? c.ids.slice(prefix.length) : c.ids;
  if (JSON.stringify(c.ids_no_special) !== JSON.stringify(plain)) out.ids_no_special = c.ids_no_special;
  if (c.decoded_no_special !== text) out.decoded_no_special = c.decoded_no_special;
  if (c.decoded_skip_special !== c.decoded_no_special) out.decoded_skip_special = c.decoded_skip_special;
  if (c.decoded !== c.decoded_skip_special) out.decoded = c.decoded;
  return out;
}

function write(file, g) {
  // One case a line: diffable, and far smaller than indented JSON.
  const head = JSON.stringify({ ...g, cases: undefined }).slice(0, -1);
  const body = g.cases.map((c) => JSON.stringify(c)).join(',\n');
  fs.writeFileSync(file, `${head},"cases":[\n${body}\n]}\n`);
  console.log(`${file}: ${g.cases.length} cases from ${g.tokenizer} (tokenizers ${VERSION}, node)`);
}

async function main() {
  const args = process.argv.slice(2);
  const arg = (name) => { const i = args.indexOf(name); return i < 0 ? null : args[i + 1]; };
  const outDir = arg('--out_dir');
  if (!outDir) throw new Error('--out_dir DIR is required');
  fs.mkdirSync(outDir, { recursive: true });
  const families = JSON.parse(fs.readFileSync(path.join(__dirname, 'families.json'), 'utf8'));
  for (const [name, family] of Object.entries(families.families)) {
    write(path.join(outDir, `${name}.golden.json`),
          await golden(family.tokenizer, families.strings, true));
    if (!family.generated) continue;
    write(path.join(outDir, `${name}.generated.golden.json`),
          await golden(family.tokenizer, families.generated_strings, false));
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
