"""dashq.quantize / dashq.evaluate: the CLI's bytes and numbers, progress,
cancellation, and errors as exceptions."""
import filecmp
import json
import os
import pathlib
import subprocess
import warnings

import pytest

import dashq

MODEL = "shared/models/stories260K/stories260K.bin"
CALIB = "shared/data/tinystories/tinystories_train_sample.txt"
TEXT = "shared/data/tinystories/tinystories_valid_sample.txt"
QARGS = dict(calib=CALIB, nsamples=4, seqlen=64, seed=1, progress=False)
CLI_QARGS = ["--calib", CALIB, "--nsamples", "4", "--seqlen", "64", "--seed", "1", "--quiet"]


def same_tree(a: pathlib.Path, b: pathlib.Path):
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert fa == fb and fa
    _, mismatch, errors = filecmp.cmpfiles(a, b, [str(f) for f in fa], shallow=False)
    assert not mismatch and not errors, mismatch


def run_cli(cli, *args):
    return subprocess.run([cli, *args], check=True, capture_output=True, text=True).stdout


def test_packed_checkpoint_is_the_clis(work, cli):
    r = dashq.quantize(MODEL, "py", method="gptq", bits=3, group=32, options={"act_order": True}, **QARGS)
    run_cli(cli, "quantize", MODEL, "--method", "gptq", "--bits", "3", "--group", "32", "--act-order", *CLI_QARGS,
            "-o", "cli")
    same_tree(work / "py", work / "cli")
    assert r.out == "py" and r.calib_windows == 4 and r.calib_len == 64
    assert r.bytes_written == sum(f.stat().st_size for f in (work / "py").iterdir())
    assert r.source_quant is None  # gut6l is full precision: nothing requantized
    names = [t.name for t in r.tensors]
    assert len(names) == 5 * 7 and names[0] == "model.layers.0.self_attn.q_proj"
    assert all(t.rel_err is not None and 0 < t.rel_err < 1 for t in r.tensors)
    assert r.mean_rel_err == pytest.approx(sum(t.rel_err for t in r.tensors) / len(r.tensors), rel=1e-9)


def test_gguf_is_the_clis(work, cli):
    r = dashq.quantize(MODEL, "py.gguf", method="dashq", format="gguf", type="Q4_K_M", **QARGS)
    run_cli(cli, "quantize", MODEL, "--method", "dashq", "--format", "gguf", "--type", "Q4_K_M", *CLI_QARGS,
            "-o", "cli.gguf")
    assert filecmp.cmp("py.gguf", "cli.gguf", shallow=False)
    assert r.bytes_written == os.path.getsize("py.gguf")
    assert len(r.tensors) >= 5 * 7 and all(t.type for t in r.tensors)  # stories260K's width 64: fallbacks


def test_evaluate_gives_the_clis_numbers(work, cli):
    ev = dict(ctx=64, chunks=4)
    base = dashq.evaluate(MODEL, ppl=TEXT, save_logits="base.kld", progress=False, **ev).perplexity
    cli_base = json.loads(run_cli(cli, "eval", MODEL, "--ppl", TEXT, "--ctx", "64", "--chunks", "4", "--json",
                                  "--quiet", "--save-logits", "cli.kld").splitlines()[0])
    assert filecmp.cmp("base.kld", "cli.kld", shallow=False)
    assert round(base.perplexity, 6) == cli_base["perplexity"] and base.n_scored == cli_base["scored"]
    dashq.quantize(MODEL, "q", method="rtn", bits=2, group=32, **QARGS)
    q = dashq.evaluate("q", kld="base.kld", progress=False, **ev).perplexity
    cli_q = json.loads(run_cli(cli, "eval", "q", "--kld", "base.kld", "--ctx", "64", "--chunks", "4", "--json",
                               "--quiet").splitlines()[0])
    assert round(q.kld, 8) == cli_q["kld"] and round(q.same_top, 6) == cli_q["same_top"]
    assert q.kld > 0.01 and round(q.base_perplexity, 6) == cli_q["base_perplexity"]
    t = dashq.evaluate(MODEL, tasks=["arc_easy", "piqa"], limit=20, data_dir="shared/data", progress=False).tasks
    cli_t = [json.loads(x) for x in run_cli(cli, "eval", MODEL, "--tasks", "arc_easy,piqa", "--limit", "20",
                                            "--data-dir", "shared/data", "--json", "--quiet").splitlines()]
    for row in cli_t:
        r = t[row["task"]]
        assert r.n == row["n"] == 20 and round(r.acc, 6) == row["acc"] and round(r.acc_norm, 6) == row["acc_norm"]


def test_progress_callable_sees_every_block_and_can_cancel(work):
    seen = []
    dashq.quantize(MODEL, "q", method="dashq", bits=4, group=32, **{**QARGS, "progress": lambda *a: seen.append(a)})
    blocks = [a for a in seen if a[0] == "quantize"]
    assert [a[1] for a in blocks] == list(range(1, 6)) and all(a[2] == 5 for a in blocks)
    with pytest.raises(dashq.Cancelled):
        dashq.quantize(MODEL, "c", method="dashq", bits=4, group=32,
                       **{**QARGS, "progress": lambda s, d, t: d < 2})
    assert not os.path.exists("c")  # nothing written: outputs are atomic


def test_an_exception_in_the_callback_stops_the_job_and_is_raised(work):
    class Stop(Exception):
        pass

    def boom(stage, done, total):
        raise Stop(stage)

    with pytest.raises(Stop):
        dashq.quantize(MODEL, "c", method="gptq", bits=4, group=32, **{**QARGS, "progress": boom})
    assert not os.path.exists("c")


def test_tqdm_bar(work, capsys):
    pytest.importorskip("tqdm")
    dashq.quantize(MODEL, "q", method="rtn", bits=4, group=32, progress=True)
    assert "quantize" in capsys.readouterr().err


def test_notes_become_warnings(work):
    pathlib.Path("short.txt").write_text("Once upon a time there was a little cat. " * 20)
    with pytest.warns(dashq.DashqWarning, match="windows overlap"):
        dashq.quantize(MODEL, "q", method="dashq", bits=4, group=32, calib="short.txt", nsamples=8, seqlen=128,
                       progress=False)


def test_a_warning_filter_set_to_error_stops_the_job(work):
    pathlib.Path("short.txt").write_text("Once upon a time there was a little cat. " * 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", dashq.DashqWarning)
        with pytest.raises(dashq.DashqWarning, match="windows overlap"):
            dashq.quantize(MODEL, "q", method="dashq", bits=4, group=32, calib="short.txt", nsamples=8, seqlen=128,
                           progress=False)
    assert not os.path.exists("q")


def test_paths_spectrum_and_task_lists(work):
    r = dashq.quantize(os.fsencode(MODEL), pathlib.Path("q"), method="gptq", bits=4, group=32, spectrum=True, **QARGS)
    assert all(t.h_lmax > 0 and t.h_lmax >= t.h_lmean > 0 and t.h_cond >= 1 for t in r.tensors)
    t = dashq.evaluate("q", tasks="arc_easy,", limit=5, data_dir="shared/data", items="items.jsonl",
                       progress=False).tasks
    assert list(t) == ["arc_easy"] and t["arc_easy"].n == 5
    assert len(pathlib.Path("items.jsonl").read_text().splitlines()) == 5


def test_errors_are_exceptions_naming_the_file(work, tmp_path):
    with pytest.raises(dashq.DashqIOError) as e:
        dashq.quantize("nope.bin", "q", method="rtn")
    assert "nope.bin" in str(e.value) and isinstance(e.value, OSError)
    bad = tmp_path / "truncated.bin"
    bad.write_bytes(pathlib.Path(MODEL).read_bytes()[:5000])
    with pytest.raises(dashq.FormatError) as e:
        dashq.evaluate(bad, ppl=TEXT, progress=False)
    assert "truncated.bin" in str(e.value)
    with pytest.raises(dashq.ArgumentError, match="needs a type"):
        dashq.quantize(MODEL, "q.gguf", method="rtn", format="gguf")
    with pytest.raises(dashq.ArgumentError, match="needs a calibration text"):
        dashq.quantize(MODEL, "q", method="gptq")
    with pytest.raises(dashq.ArgumentError, match="unknown method"):
        dashq.quantize(MODEL, "q", method="awq")
    with pytest.raises(dashq.ArgumentError):
        dashq.evaluate(MODEL)
    with pytest.raises(dashq.DashqError, match="unknown task"):
        dashq.evaluate(MODEL, tasks=["mmlu"], data_dir="shared/data", progress=False)
    with pytest.raises(dashq.ArgumentError):  # an output that would replace the input
        dashq.quantize(MODEL, MODEL, method="rtn", progress=False)
    assert not any(p.name.startswith(".") and "tmp" in p.name for p in work.iterdir())
