#!/usr/bin/env python3
"""Where transformers' save_pretrained cuts safetensors shards, for test_hf_export.

Builds the model of a Hugging Face folder's config.json with transformers
(random weights: only names, order and sizes decide the cut), saves it with
save_pretrained at a small max_shard_size and writes the weight_map of the index it made (tensor
name -> shard file) to OUT.json. test_hf_export exports the same model with
`dashq convert --format hf` at the same size and compares its index.

Usage: python3 make_hf_shards_fixture.py MODEL_DIR DTYPE MAX_SHARD_BYTES OUT.json
  (a venv with Debian's python3-torch and transformers 4.44.2 from PyPI:
   /usr/bin/python3 -m venv --system-site-packages V; V/bin/pip install transformers==4.44.2)
Made: tests/fixtures/hf_shards/gut6l-bf16-300000.json from ../shared/models/gut6l-hf bfloat16 300000;
      tests/fixtures/hf_shards/qwen2-tiny-f32-20000.json from tests/fixtures/qwen2-tiny float32 20000.
"""
import json, pathlib, sys, tempfile

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

src, dtype, max_bytes, out = sys.argv[1], getattr(torch, sys.argv[2]), int(sys.argv[3]), sys.argv[4]
model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src), torch_dtype=dtype)
with tempfile.TemporaryDirectory() as d:
    model.save_pretrained(d, max_shard_size=max_bytes, safe_serialization=True)
    index = json.loads((pathlib.Path(d) / "model.safetensors.index.json").read_text())
index["made_by"] = f"transformers {transformers.__version__} save_pretrained(max_shard_size={max_bytes}), {sys.argv[2]}"
pathlib.Path(out).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
