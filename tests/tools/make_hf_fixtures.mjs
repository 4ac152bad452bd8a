// Expected token ids from transformers.js (an independent JavaScript
// implementation of HF tokenizers) for every string in strings.jsonl.
// Usage: node make_hf_fixtures.mjs SHARED_DIR   (after npm install --ignore-scripts)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { env, AutoTokenizer } from '@huggingface/transformers';

const shared = process.argv[2];
const fix = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'tokenizer');
const strings = fs.readFileSync(path.join(fix, 'strings.jsonl'), 'utf8').trim().split('\n').map(JSON.parse);

// Qwen2 ships vocab.json + merges.txt only; transformers.js needs tokenizer.json,
// so write the one Qwen2 publishes (NFC, isolated regex split, byte-level BPE).
function qwen2Folder() {
  const src = path.join(shared, 'models/tokenizers/qwen2-1.5b-instruct');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qwen2-'));
  const vocab = JSON.parse(fs.readFileSync(path.join(src, 'vocab.json'), 'utf8'));
  const merges = fs.readFileSync(path.join(src, 'merges.txt'), 'utf8').split('\n').filter((l, i) => l && !(i === 0 && l.startsWith('#version')));
  const added = Object.entries(JSON.parse(fs.readFileSync(path.join(src, 'tokenizer_config.json'), 'utf8')).added_tokens_decoder)
    .map(([id, t]) => ({ id: Number(id), ...t }));
  const re = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  const tj = {
    version: '1.0', truncation: null, padding: null, added_tokens: added,
    normalizer: { type: 'NFC' },
    pre_tokenizer: { type: 'Sequence', pretokenizers: [
      { type: 'Split', pattern: { Regex: re }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false }] },
    post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
             fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
  };
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tj));
  fs.copyFileSync(path.join(src, 'tokenizer_config.json'), path.join(dir, 'tokenizer_config.json'));
  return dir;
}

const TOKENIZERS = {
  hf_gut6l: path.join(shared, 'models/gut6l-hf'),
  hf_gpt2: path.join(shared, 'models/tokenizers/gpt2'),
  hf_mistral: path.join(shared, 'models/tokenizers/mistral-7b-instruct-v0.3'),
  hf_qwen2: qwen2Folder(),
};

env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = '/';
for (const [name, dir] of Object.entries(TOKENIZERS)) {
  const tok = await AutoTokenizer.from_pretrained(path.resolve(dir), { local_files_only: true });
  const out = strings.map((s) => JSON.stringify(Array.from(tok.encode(s, { add_special_tokens: false })))).join('\n') + '\n';
  fs.writeFileSync(path.join(fix, `${name}.jsonl`), out);
  console.log(name, strings.length);
}
