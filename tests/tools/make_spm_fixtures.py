#!/usr/bin/env python3
"""Expected token ids from Google's sentencepiece (Debian python3-sentencepiece)
for every string in strings.jsonl, one JSON array per line, no BOS.
Usage: /usr/bin/python3 make_spm_fixtures.py SHARED_DIR"""
import json, pathlib, sys
import sentencepiece as spm

MODELS = {
    "spm_tok512": "models/stories260K/tok512.model",
    "spm_gut6l": "models/gut6l/tokenizer.model",
    "spm_llama2": "models/tokenizers/llama2-sentencepiece/tokenizer.model",
    "spm_mistral": "models/tokenizers/mistral-7b-instruct-v0.3/tokenizer.model",
}

def main():
    shared = pathlib.Path(sys.argv[1])
    fix = pathlib.Path(__file__).resolve().parents[1] / "fixtures/tokenizer"
    strings = [json.loads(l) for l in open(fix / "strings.jsonl", encoding="utf-8")]
    for name, rel in MODELS.items():
        sp = spm.SentencePieceProcessor(model_file=str(shared / rel))
        with open(fix / f"{name}.jsonl", "w") as f:
            for s in strings:
                f.write(json.dumps(sp.encode(s)) + "\n")
        print(name, len(strings))

main()
