#!/usr/bin/env node
// Writes runtime/tokenizer/testdata/unicode_normalization.txt: what Hugging Face
// tokenizers' NFC, NFD, NFKC and NFKD normalizers (the Rust unicode-normalization crate)
// do to every Unicode scalar value, for normalizer_test.cc to compare with ICU.
//
//   (cd /tmp/tok && npm install tokenizers@0.23.2)
//   NODE_PATH=/tmp/tok/node_modules node tools/goldens/make_unicode_normalization_table.js \
//       > runtime/tokenizer/testdata/unicode_normalization.txt
//
// Lines "FORM CP CPS..." where a form changes a code point, leaving out what follows
// from the line before: NFD rows where NFD changes it; NFC where NFC differs from NFD;
// NFKD where NFKD differs from NFD; NFKC where NFKC differs from NFKD ("-" for the code
// point itself). Hangul syllables (decomposed by formula) are left out. "ORDER CP" for
// each code point that NFD moves after U+0334 (canonical combining class above 1),
// which is how a new combining mark shows.
'use strict';
const t = require('tokenizers');

const hex = (s) => Array.from(s, (c) => c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')).join(' ');
const forms = [['NFC', t.nfcNormalizer()], ['NFD', t.nfdNormalizer()],
               ['NFKC', t.nfkcNormalizer()], ['NFKD', t.nfkdNormalizer()]];
const out = [`# tokenizers ${require('tokenizers/package.json').version} (Node binding)`];
const nfd = forms[1][1];
for (let cp = 0; cp <= 0x10FFFF; ++cp) {
  if (cp >= 0xD800 && cp <= 0xDFFF) continue;
  const c = String.fromCodePoint(cp);
  if (cp >= 0xAC00 && cp <= 0xD7A3) continue;
  const [nfc, d, nfkc, nfkd] = forms.map(([, n]) => n.normalizeString(c));
  const row = (name, r) => out.push(`${name} ${hex(c)} ${r === c ? '-' : hex(r)}`);
  if (d !== c) row('NFD', d);
  if (nfc !== d) row('NFC', nfc);
  if (nfkd !== d) row('NFKD', nfkd);
  if (nfkc !== nfkd) row('NFKC', nfkc);
  if (nfd.normalizeString(c + '\u0334') !== d + '\u0334') out.push(`ORDER ${hex(c)}`);
}
process.stdout.write(out.join('\n') + '\n');
