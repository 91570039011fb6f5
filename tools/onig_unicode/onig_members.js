// Prints, as a JSON list, the code points that one-character pattern argv[3] matches in
// Hugging Face tokenizers (its Oniguruma), by running a Split pre-tokenizer that removes
// matches on each character alone. argv[2]: the folder holding the npm package
// `tokenizers` (the Node binding of the same Rust library as the Python package).
const {Tokenizer} = require(require('path').resolve(process.argv[2], 'tokenizers'));
const pat = process.argv[3];
const t = Tokenizer.fromString(JSON.stringify({version:"1.0",truncation:null,padding:null,added_tokens:[],normalizer:null,
  pre_tokenizer:{type:"Split",pattern:{Regex:pat},behavior:"Removed",invert:false},post_processor:null,decoder:null,
  model:{type:"BPE",dropout:null,unk_token:null,continuing_subword_prefix:null,end_of_word_suffix:null,fuse_unk:false,byte_fallback:false,ignore_merges:false,vocab:{},merges:[]}}));
const p = t.getPreTokenizer();
const out = [];
for (let c = 0; c < 0x110000; c++) {
  if (c >= 0xD800 && c <= 0xDFFF) continue;
  if (p.preTokenizeString(String.fromCodePoint(c)).length === 0) out.push(c);
}
console.log(JSON.stringify(out));
