// transformers.js (an independent JavaScript implementation of HF
// tokenizers) on the tokenizer.json that `dashq convert --format hf` derives
// from the SmolLM2 GGUF: its ids for every string of strings.jsonl become
// tests/fixtures/tokenizer/hf_smollm2.jsonl, which test_hf_export compares
// with dashq's ids on the GGUF's own tokenizer.
// Usage (from the repository root, after npm ci --ignore-scripts in tests/tools):
//   build/dashq convert "$(scripts/models.sh --path smollm2-135m)" --format hf --type BF16 -o /tmp/smollm2-hf
//   node tests/tools/make_hf_export_fixture.mjs /tmp/smollm2-hf
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { env, AutoTokenizer } from '@huggingface/transformers';

const dir = path.resolve(process.argv[2]);
const fix = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'tokenizer');
const strings = fs.readFileSync(path.join(fix, 'strings.jsonl'), 'utf8').trim().split('\n').map(JSON.parse);

env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = '/';
const tok = await AutoTokenizer.from_pretrained(dir, { local_files_only: true });
// special tokens written in the text are split out, as dashq does with parse_special
const out = strings.map((s) => JSON.stringify(Array.from(tok.encode(s, { add_special_tokens: false })))).join('\n') + '\n';
fs.writeFileSync(path.join(fix, 'hf_smollm2.jsonl'), out);
console.log('hf_smollm2', strings.length, 'strings');
