#!/usr/bin/env python3
"""lm-evaluation-harness cross-check of `dashq eval --tasks` (bench/harness_crosscheck.sh runs it).

  tasks DATA_DIR OUT_DIR N   writes OUT_DIR/<task>.jsonl (the first N items dashq reads, in its order, turned
                             back into the fields of the Hugging Face data sets the harness loads) and
                             OUT_DIR/<task>.yaml (the harness's own task config for it, data from that file)
  capb DATA_DIR OUT_DIR N    OUT_DIR/hellaswag/hellaswag_val_full.txt: the first N HellaSwag items with ctx_b
                             guessed (the lower-case tail after the context's last ". ") and capitalized as the
                             harness does (ctx_a + " " + ctx_b.capitalize()); `dashq eval --data-dir OUT_DIR`
                             then measures what the split missing from llama.cpp's text format costs
  compare HARNESS_DIR DASHQ_ITEMS OUT.csv OUT.txt [DASHQ_CAPB_ITEMS]
                             per task: both sides' acc / acc_norm (acc_norm per character on both, as the harness),
                             items whose prediction differs, |log-likelihood difference|; OUT.txt lists each
                             differing item with both sides' log-likelihoods

Templates are the installed harness's (lm_eval/tasks/{piqa,arc,hellaswag,winogrande,super_glue/boolq,lambada});
only dataset_path/dataset_kwargs/split and task names change (suffix _dq, so they cannot clash)."""
import bz2, glob, json, math, os, sys

TASKS = ["piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande", "boolq", "lambada"]

MC_METRICS = """metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""
ACC_ONLY = """metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""

def head(path, n):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                out.append(json.loads(line))
                if len(out) == n:
                    break
    return out

def strip_prefix(s, p):
    assert s.startswith(p), (s[:60], p)
    return s[len(p):]

def derive(task, data, n):
    icl = os.path.join(data, "llm-foundry-icl")
    docs = []
    if task == "piqa":  # query "Question: GOAL\n"
        for d in head(os.path.join(icl, "piqa.jsonl"), n):
            q = strip_prefix(d["query"], "Question: ")
            q = q[:-1] if q.endswith("\n") else q
            docs.append({"goal": q, "sol1": d["choices"][0], "sol2": d["choices"][1], "label": int(d["gold"])})
    elif task in ("arc_easy", "arc_challenge"):  # query "Question: Q"
        for d in head(os.path.join(icl, task + ".jsonl"), n):
            q = strip_prefix(d["query"], "Question: ")
            q = q[:-1] if q.endswith("\n") else q
            labels = "ABCDEFGHIJKLMNOP"[: len(d["choices"])]
            docs.append({"question": q, "choices": {"text": d["choices"], "label": list(labels)},
                         "answerKey": labels[int(d["gold"])]})
    elif task == "boolq":  # query "Passage: P\nQuestion: Q?"
        for d in head(os.path.join(icl, "boolq.jsonl"), n):
            body = strip_prefix(d["query"], "Passage: ")
            k = body.rindex("\nQuestion: ")
            q = body[k + len("\nQuestion: "):]
            assert q.endswith("?"), q
            assert d["choices"] == ["no", "yes"]
            docs.append({"passage": body[:k], "question": q[:-1], "label": int(d["gold"])})
    elif task == "winogrande":  # context_options = sentence[:blank] + option_i; continuation = the rest
        for d in head(os.path.join(icl, "winogrande.jsonl"), n):
            a, b = d["context_options"]
            k = 0
            while k < min(len(a), len(b)) and a[k] == b[k]:
                k += 1
            while k and a[k - 1] != " ":  # back to a word start: any split point gives the same sentence[:idx] + option
                k -= 1
            docs.append({"sentence": a[:k] + "_ " + d["continuation"], "option1": a[k:], "option2": b[k:],
                         "answer": str(int(d["gold"]) + 1)})
    elif task == "lambada":  # text = context + " " + last word
        for d in head(os.path.join(icl, "lambada_openai.jsonl"), n):
            docs.append({"text": d["context"] + " " + d["continuation"]})
    elif task == "hellaswag_capb":
        for d in derive("hellaswag", data, n):
            k = d["ctx_a"].rfind(". ")
            tail = d["ctx_a"][k + 2:] if k >= 0 else ""
            if tail and tail[0].islower():
                d["ctx_a"], d["ctx_b"] = d["ctx_a"][:k + 1], tail
            docs.append(d)
    elif task == "hellaswag":  # llama.cpp's 6-line format: "label: ctx", gold, 4 endings
        lines = bz2.open(os.path.join(data, "hellaswag", "hellaswag_val_full.txt.bz2"), "rt", encoding="utf-8").read().split("\n")
        for i in range(n):
            six = lines[6 * i: 6 * i + 6]
            label, ctx = six[0].split(": ", 1)
            # ctx = ctx_a + " " + ctx_b in the source; the split is not in this file, so ctx_b = "" here
            # (the harness capitalizes ctx_b; see the report). preprocess() strips the trailing space.
            docs.append({"activity_label": label, "ctx_a": ctx, "ctx_b": "", "endings": six[2:6], "label": six[1]})
    return docs

def yaml_for(task, jsonl, lm_eval_tasks):
    src = f"dataset_path: json\ndataset_name: null\ndataset_kwargs:\n  data_files:\n    test: {jsonl}\ntest_split: test\n"
    name = f"task: {task}_dq\n"
    if task == "piqa":
        return name + src + ("output_type: multiple_choice\ndoc_to_text: \"Question: {{goal}}\\nAnswer:\"\n"
                             "doc_to_target: label\ndoc_to_choice: \"{{[sol1, sol2]}}\"\n" + MC_METRICS)
    if task in ("arc_easy", "arc_challenge"):
        return name + src + ("output_type: multiple_choice\ndoc_to_text: \"Question: {{question}}\\nAnswer:\"\n"
                             "doc_to_target: \"{{choices.label.index(answerKey)}}\"\ndoc_to_choice: \"{{choices.text}}\"\n" + MC_METRICS)
    if task == "boolq":
        return name + src + ("output_type: multiple_choice\ndoc_to_text: \"{{passage}}\\nQuestion: {{question}}?\\nAnswer:\"\n"
                             "doc_to_target: label\ndoc_to_choice: [\"no\", \"yes\"]\n" + ACC_ONLY)
    if task == "winogrande":
        return name + src + ("output_type: multiple_choice\ndoc_to_text: !function preprocess_winogrande.doc_to_text\n"
                             "doc_to_target: !function preprocess_winogrande.doc_to_target\n"
                             "doc_to_choice: !function preprocess_winogrande.doc_to_choice\n" + ACC_ONLY)
    if task == "hellaswag":
        return name + src + ("output_type: multiple_choice\nprocess_docs: !function utils.process_docs\n"
                             "doc_to_text: \"{{query}}\"\ndoc_to_target: \"{{label}}\"\ndoc_to_choice: \"choices\"\n" + MC_METRICS)
    if task == "lambada":
        return name + src + ("output_type: loglikelihood\ndoc_to_text: \"{{text.split(' ')[:-1]|join(' ')}}\"\n"
                             "doc_to_target: \"{{' '+text.split(' ')[-1]}}\"\nmetric_list:\n"
                             "  - metric: perplexity\n    aggregation: perplexity\n    higher_is_better: false\n"
                             "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")

def cmd_tasks(data, out, n):
    import shutil
    import lm_eval
    tdir = os.path.join(os.path.dirname(lm_eval.__file__), "tasks")
    os.makedirs(out, exist_ok=True)
    # the harness's own helper modules, unchanged, beside the YAMLs that name them
    shutil.copy(os.path.join(tdir, "hellaswag", "utils.py"), os.path.join(out, "utils.py"))
    shutil.copy(os.path.join(tdir, "winogrande", "preprocess_winogrande.py"), os.path.join(out, "preprocess_winogrande.py"))
    for t in TASKS:
        docs = derive(t, data, n)
        p = os.path.abspath(os.path.join(out, t + ".jsonl"))
        with open(p, "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
        with open(os.path.join(out, t + ".yaml"), "w") as f:
            f.write(yaml_for(t, p, tdir))
        print(f"{t}: {len(docs)} docs -> {p}", file=sys.stderr)

def harness_samples(hdir, task):
    """doc_id -> (list of (loglik, greedy), doc, acc, acc_norm) from --log_samples output."""
    paths = sorted(glob.glob(os.path.join(hdir, "**", f"samples_{task}_dq_*.jsonl"), recursive=True))
    if not paths:
        return None
    out = {}
    with open(paths[-1], encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            # filtered_resps: [[loglik, is_greedy], ...] (as strings in 0.4.13's samples); arguments: gen_args_i
            # {arg_0: context, arg_1: continuation}
            fr = d["filtered_resps"]
            if fr and not isinstance(fr[0], list):
                fr = [fr]
            resps = [(float(r[0]), str(r[1]) == "True") for r in fr]
            args = d.get("arguments")
            if isinstance(args, dict):
                args = [(a["arg_0"], a["arg_1"]) for _, a in sorted(args.items(), key=lambda kv: int(kv[0].split("_")[-1]))]
            out[d["doc_id"]] = {"ll": resps, "acc": d.get("acc"), "acc_norm": d.get("acc_norm"), "doc": d.get("doc"),
                                "args": args}
    return out

def argmax(v):
    return max(range(len(v)), key=lambda i: (v[i], -i))  # first maximum, as numpy.argmax

def mean_se(xs):
    n = len(xs)
    m = sum(xs) / n if n else float("nan")
    se = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1) / n) if n > 1 else 0.0
    return m, se

def norm_pred(ll, lengths):
    return argmax([a / b for a, b in zip(ll, lengths)])

def load_items(path):
    dq = {}
    for line in open(path, encoding="utf-8"):
        d = json.loads(line)
        dq.setdefault(d["task"], []).append(d)
    return dq

def cmd_compare(hdir, items_path, out_csv, out_txt, capb_items=None):
    dq = load_items(items_path)
    rows, notes = [], []
    for task in TASKS:
        hs = harness_samples(hdir, task)
        items = dq.get(task, [])
        if hs is None or not items:
            continue
        n = min(len(items), len(hs))
        h_acc, d_acc, h_norm, d_norm, dll, flips, flips_norm, byte_flips = [], [], [], [], [], [], [], []
        margin = math.inf  # the closest call: smallest gap between the harness's two best log-likelihoods
        for i in range(n):
            h, q = hs[i], items[i]
            hll = [x[0] for x in h["ll"]]
            qll = q["loglik"]
            assert len(hll) == len(qll), (task, i)
            dll += [abs(a - b) for a, b in zip(hll, qll)]
            if len(hll) > 1:
                top = sorted(hll, reverse=True)
                margin = min(margin, top[0] - top[1])
            hn = dn = None
            if len(hll) == 1:  # LAMBADA: acc = greedy match, perplexity from the log-likelihood
                ha, da = float(h["ll"][0][1]), float(q["greedy"][0])
            else:
                gold = q["gold"]
                ha, da = float(h["acc"]), float(q["pred"] == gold)
                assert ha == float(argmax(hll) == gold), (task, i, "harness acc is not argmax ll")
                if h["acc_norm"] is not None:
                    # the harness's choices: its continuations less the target delimiter " "
                    choices = [a[1][1:] for a in h["args"]]
                    hn = float(h["acc_norm"])
                    assert hn == float(norm_pred(hll, [len(c) for c in choices]) == gold), (task, i, "acc_norm")
                    dn = float(q["pred_norm"] == gold)
                    by_chars = norm_pred(qll, [len(c) for c in choices])
                    by_bytes = norm_pred(qll, [len(c.encode("utf-8")) for c in choices])
                    if by_bytes != by_chars:  # what dividing by UTF-8 bytes (dashq before 654c323) changes
                        byte_flips.append(i)
                        notes.append(f"{task} item {i}: acc_norm per UTF-8 byte would pick {by_bytes}, per character "
                                     f"{by_chars} (gold {gold}; dashq picked {q['pred_norm']}; choices {choices})")
            h_acc.append(ha), d_acc.append(da)
            if ha != da:
                flips.append(i)
            if hn is not None:
                h_norm.append(hn), d_norm.append(dn)
                if hn != dn:
                    flips_norm.append(i)
            if ha != da or (hn is not None and hn != dn):
                notes.append(f"{task} item {i} (gold {q.get('gold')}): harness ll {['%.5f' % x for x in hll]} "
                             f"acc {ha:g} acc_norm {hn}; dashq ll {['%.5f' % x for x in qll]} acc {da:g} acc_norm {dn}")
        r = {"task": task, "n": n}
        r["harness_acc"], r["harness_acc_se"] = mean_se(h_acc)
        r["dashq_acc"], r["dashq_acc_se"] = mean_se(d_acc)
        if h_norm:
            r["harness_acc_norm"], r["harness_acc_norm_se"] = mean_se(h_norm)
            r["dashq_acc_norm"], r["dashq_acc_norm_se"] = mean_se(d_norm)
            r["acc_norm_byte_changes"] = len(byte_flips)
        if task == "lambada":
            r["harness_ppl"] = math.exp(-sum(hs[i]["ll"][0][0] for i in range(n)) / n)
            r["dashq_ppl"] = math.exp(-sum(items[i]["loglik"][0] for i in range(n)) / n)
        if task == "boolq":  # how often each side answers "yes"
            r["harness_yes"] = sum(argmax([x[0] for x in hs[i]["ll"]]) == 1 for i in range(n)) / n
            r["dashq_yes"] = sum(items[i]["pred"] == 1 for i in range(n)) / n
            r["gold_yes"] = sum(items[i]["gold"] == 1 for i in range(n)) / n
        r["acc_disagree"] = len(flips)
        r["acc_norm_disagree"] = len(flips_norm) if h_norm else ""
        dll.sort()
        r["max_abs_dll"] = dll[-1]
        r["median_abs_dll"] = dll[len(dll) // 2]
        if margin < math.inf:
            r["min_acc_margin"] = margin
        rows.append(r)
    if capb_items and os.path.exists(capb_items):  # dashq, HellaSwag with ctx_b capitalized, against plain
        cap, plain = load_items(capb_items).get("hellaswag", []), dq.get("hellaswag", [])
        n = min(len(cap), len(plain))
        if n:
            r = {"task": "hellaswag_ctx_b_capitalized", "n": n}
            r["dashq_acc"], r["dashq_acc_se"] = mean_se([float(cap[i]["pred"] == cap[i]["gold"]) for i in range(n)])
            r["dashq_acc_norm"], r["dashq_acc_norm_se"] = mean_se([float(cap[i]["pred_norm"] == cap[i]["gold"]) for i in range(n)])
            r["acc_disagree"] = sum(cap[i]["pred"] != plain[i]["pred"] for i in range(n))
            r["acc_norm_disagree"] = sum(cap[i]["pred_norm"] != plain[i]["pred_norm"] for i in range(n))
            d = sorted(abs(a - b) for i in range(n) for a, b in zip(cap[i]["loglik"], plain[i]["loglik"]))
            r["median_abs_dll"], r["max_abs_dll"] = d[len(d) // 2], d[-1]
            rows.append(r)
    cols = ["task", "n", "harness_acc", "dashq_acc", "harness_acc_se", "dashq_acc_se", "harness_acc_norm", "dashq_acc_norm",
            "harness_acc_norm_se", "dashq_acc_norm_se", "harness_ppl", "dashq_ppl", "acc_disagree", "acc_norm_disagree",
            "acc_norm_byte_changes", "median_abs_dll", "max_abs_dll", "min_acc_margin", "gold_yes", "harness_yes", "dashq_yes"]
    fmt = lambda v: "" if v is None or v == "" else (f"{v:.6g}" if isinstance(v, float) else str(v))
    with open(out_csv, "w") as f:
        f.write(",".join(cols) + "\n")
        for r in rows:
            f.write(",".join(fmt(r.get(c)) for c in cols) + "\n")
    with open(out_txt, "w") as f:
        f.write("# items where the harness and dashq disagree (acc / acc_norm), and where per-byte acc_norm would differ\n")
        for line in notes:
            f.write(line + "\n")
        if not notes:
            f.write("# (none: every acc and acc_norm decision agrees, and per-byte acc_norm would pick as per-character)\n")
        f.write(f"# hellaswag_ctx_b_capitalized row: dashq on the same items with the harness's ctx_b.capitalize() redone; "
                f"its disagree columns count items whose prediction changed against plain dashq\n")
    an = lambda r, k, f="%.4f": (f % r[k]) if k in r else "-"
    print(f"{'task':28} {'n':>4}  {'acc harness':>11} {'dashq':>7}  {'acc_norm harness':>16} {'dashq':>7}  {'differ':>6}  {'max|dll|':>9}")
    for r in rows:
        print(f"{r['task']:28} {r['n']:>4}  {an(r, 'harness_acc'):>11} {an(r, 'dashq_acc'):>7}  {an(r, 'harness_acc_norm'):>16} "
              f"{an(r, 'dashq_acc_norm'):>7}  {r['acc_disagree']:>2}/{r['acc_norm_disagree'] if r['acc_norm_disagree'] != '' else '-':<3}  "
              f"{r['max_abs_dll']:>9.2e}" + (f"  ppl {r['harness_ppl']:.3f} / {r['dashq_ppl']:.3f}" if "harness_ppl" in r else ""))

if __name__ == "__main__":
    if sys.argv[1] == "tasks":
        cmd_tasks(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "capb":
        out = os.path.join(sys.argv[3], "hellaswag")
        os.makedirs(out, exist_ok=True)
        changed = 0
        with open(os.path.join(out, "hellaswag_val_full.txt"), "w", encoding="utf-8") as f:
            for d in derive("hellaswag_capb", sys.argv[2], int(sys.argv[4])):
                changed += bool(d["ctx_b"])
                ctx = d["ctx_a"] + " " + d["ctx_b"].capitalize() if d["ctx_b"] else d["ctx_a"]
                f.write("\n".join([d["activity_label"] + ": " + ctx, d["label"]] + d["endings"]) + "\n")
        print(f"hellaswag: ctx_b capitalized in {changed} of {sys.argv[4]} items", file=sys.stderr)
    elif sys.argv[1] == "compare":
        cmd_compare(*sys.argv[2:])
    else:
        sys.exit(__doc__)
