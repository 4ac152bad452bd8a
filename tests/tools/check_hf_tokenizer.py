#!/usr/bin/env python3
"""Hugging Face's own tokenizers library (Rust, `pip install tokenizers`)
loads the tokenizer.json that `dashq convert --format hf` wrote and encodes
every string of tests/fixtures/tokenizer/strings.jsonl; prints the strings
where its ids differ from `dashq tokenize` on the same folder.
Usage: python check_hf_tokenizer.py DIR DASHQ   Not a CI test (needs the pip package)."""
import json, pathlib, subprocess, sys
from tokenizers import Tokenizer

def main(out_dir, dashq):
    strings = [json.loads(l) for l in (pathlib.Path(__file__).resolve().parents[1] / "fixtures/tokenizer/strings.jsonl")
               .read_text(encoding="utf-8").splitlines() if l]
    tok = Tokenizer.from_file(str(pathlib.Path(out_dir) / "tokenizer.json"))
    bad = 0
    for i, s in enumerate(strings):
        want = tok.encode(s, add_special_tokens=False).ids
        out = subprocess.run([dashq, "tokenize", out_dir, "--text", s, "--no-bos", "--special"], check=True,
                             capture_output=True, text=True).stdout.split()
        got = [int(x) for x in out]
        if got != want:
            bad += 1
            print(f"line {i + 1} {s[:50]!r}: tokenizers {want[:12]} dashq {got[:12]}")
    print(f"{out_dir}: {len(strings) - bad} of {len(strings)} strings identical to HF tokenizers")
    return bad

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(1 if main(*sys.argv[1:]) else 0)
