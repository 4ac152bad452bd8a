"""The whole jobs: quantize a model file into a GGUF file or a DASH-Q packed
checkpoint, and evaluate one (perplexity, KL divergence, zero-shot tasks),
as `dashq quantize` and `dashq eval` do, through the same library calls."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from ._core import (ArgumentError, CStrings, DashqWarning, FormatError, Progress, ProgressFn, check, new_error,
                    options_text)
from ._dashq_cffi import ffi, lib

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class TensorReport:
    name: str             # Hugging Face module name, e.g. model.layers.3.self_attn.q_proj
    type: str             # GGUF: its llama.cpp type; else ""
    rel_err: Optional[float]  # ‖(W−Ŵ)X‖/‖WX‖ over the calibration windows; None when not measured
    seconds: float
    in_features: int
    quant_in_features: int    # more than in_features when the group padded the width
    # with spectrum=True and a method on the full H: the curvature it was solved with (else None)
    h_lmax: Optional[float] = None
    h_lmean: Optional[float] = None
    h_cond: Optional[float] = None     # condition number with 1 % damping


@dataclass(frozen=True)
class QuantizeReport:
    out: str
    tensors: List[TensorReport]
    mean_rel_err: float
    calib_windows: int
    calib_len: int
    n_padded: int
    n_fallback: int
    t_forward: float
    t_stats: float
    t_solve: float
    t_total: float
    t_gradients: float
    t_transform: float
    bytes_written: int    # GGUF: the file's size; packed: its folder's files
    hidden_spilled: bool
    source_quant: Optional[str] = None  # the input's own quantization ("Q4_1"): this run requantized it; None: full precision


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    perplexity_err: float
    nll: float
    n_scored: int
    n_windows: int
    ctx: int
    kld: Optional[float] = None        # with kld=: mean KL(base || model) per token
    kld_err: Optional[float] = None
    kld_p99: Optional[float] = None
    same_top: Optional[float] = None   # top-1 agreement with the base
    same_top_err: Optional[float] = None
    base_perplexity: Optional[float] = None


@dataclass(frozen=True)
class TaskResult:
    task: str
    n: int
    acc: float
    acc_err: float
    acc_norm: Optional[float]
    acc_norm_err: Optional[float]
    perplexity: Optional[float]   # LAMBADA
    chance: float
    majority: float
    skipped: int
    tokens: int
    seconds: float


@dataclass(frozen=True)
class EvalResult:
    perplexity: Optional[PerplexityResult] = None
    tasks: Dict[str, TaskResult] = field(default_factory=dict)


class _Loaded:
    """A model and its tokenizer, freed on exit (dq_cli_load's sequence)."""

    def __init__(self, path: PathLike, tokenizer: Optional[PathLike], lazy: bool):
        self.s = CStrings()
        self.m = ffi.new("dq_model **")
        self.t = ffi.new("dq_tokenizer **")
        self.path = os.fspath(path)
        self.tokenizer = tokenizer
        self.lazy = lazy

    def __enter__(self):
        err = new_error()
        load = lib.dq_model_load_lazy if self.lazy else lib.dq_model_load
        check(load(self.s(self.path), self.m, err), err)
        try:
            vocab = lib.dq_model_config(self.m[0]).vocab_size
            if self.tokenizer is not None:
                check(lib.dq_tokenizer_load(self.s(self.tokenizer), self.t, err), err)
            else:
                check(lib.dq_tokenizer_for_model(self.s(self.path), vocab, self.t, err), err)
            if lib.dq_tokenizer_vocab_size(self.t[0]) > vocab:
                raise FormatError(f"{self.tokenizer or self.path}: tokenizer has {lib.dq_tokenizer_vocab_size(self.t[0])} "
                                  f"tokens, model {vocab}", "format")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if self.t[0] != ffi.NULL:
            lib.dq_tokenizer_free(self.t[0])
            self.t[0] = ffi.NULL
        if self.m[0] != ffi.NULL:
            lib.dq_model_free(self.m[0])
            self.m[0] = ffi.NULL


def quantize(
    model: PathLike,
    out: PathLike,
    *,
    method: str = "dashq",
    bits: int = 4,
    group: int = 128,
    calib: Optional[PathLike] = None,
    nsamples: int = 128,
    seqlen: int = 0,
    seed: int = 0,
    format: str = "packed",
    type: Optional[str] = None,
    pure: bool = False,
    options: Union[str, Mapping[str, Any], None] = None,
    quantize_head: bool = False,
    rotate: Optional[str] = None,
    smooth: Optional[str] = None,
    smooth_alpha: float = 0.0,
    hero_beta: float = 0.0,
    hero_steps: int = 0,
    act_bits: int = 0,
    act_group: int = 0,
    spectrum: bool = False,
    tokenizer: Optional[PathLike] = None,
    mem_budget: int = 0,
    tmp_dir: Optional[PathLike] = None,
    hidden_dtype: Optional[str] = None,
    resume: bool = False,
    threads: int = 0,
    progress: Union[bool, ProgressFn] = True,
) -> QuantizeReport:
    """Quantizes the model file or folder `model` and writes `out` atomically:
    a DASH-Q packed checkpoint folder (format="packed", bits/group) or a GGUF
    file llama.cpp runs (format="gguf", type="Q4_K_M", ...). The arguments are
    `dashq quantize`'s flags (`dashq quantize --help`); options are the
    method's own ({"act_order": True, "percdamp": 0.05}). Weights stream
    block by block from the file. Same bytes as the CLI for the same inputs."""
    s = CStrings()
    p = ffi.new("dq_quantize_params *", lib.dq_quantize_default_params())
    p.method, p.options, p.format, p.gguf_type = s(method), s(options_text(options)), s(format), s(type)
    p.bits, p.group, p.pure, p.calib = bits, group, pure, s(calib)
    p.nsamples, p.seqlen, p.seed, p.quantize_head = nsamples, seqlen, seed, quantize_head
    p.rotate, p.smooth, p.smooth_alpha, p.spectrum = s(rotate), s(smooth), smooth_alpha, spectrum
    p.hero_beta, p.hero_steps = hero_beta, hero_steps
    p.act_bits, p.act_group, p.mem_budget, p.tmp_dir = act_bits, act_group, mem_budget, s(tmp_dir)
    p.hidden_dtype, p.resume, p.n_threads = s(hidden_dtype), resume, threads
    prog = Progress(progress)
    prog.install(p.progress)
    err = new_error()
    check(lib.dq_quantize_check(p, err), err)  # before minutes of loading
    r = ffi.new("dq_quantize_report *")
    with _Loaded(model, tokenizer, lazy=True) as ld:
        st = lib.dq_quantize(ld.m[0], ld.t[0], s(out), p, r, err)
        try:
            prog.finish(st, err)
            return _quantize_report(os.fspath(out), r)
        finally:
            lib.dq_quantize_report_free(r)


def _quantize_report(out: str, r) -> QuantizeReport:
    tensors = [
        TensorReport(ffi.string(t.name).decode(), ffi.string(t.type).decode(), t.rel_err if t.rel_err >= 0 else None,
                     t.seconds, t.in_features, t.quant_in_features, *((t.h_lmax, t.h_lmean, t.h_cond)
                                                                      if t.h_lmean > 0 else (None, None, None)))
        for t in (r.tensors[i] for i in range(r.n_tensors))
    ]
    return QuantizeReport(out, tensors, r.mean_rel_err, r.calib_windows, r.calib_len, r.n_padded, r.n_fallback,
                          r.t_forward, r.t_stats, r.t_solve, r.t_total, r.t_gradients, r.t_transform,
                          int(r.bytes_written), bool(r.hidden_spilled),
                          ffi.string(r.source_quant).decode() or None)


def evaluate(
    model: PathLike,
    *,
    ppl: Optional[PathLike] = None,
    kld: Optional[PathLike] = None,
    save_logits: Optional[PathLike] = None,
    ctx: int = 0,
    chunks: int = 0,
    llamacpp: bool = False,
    tasks: Union[str, Sequence[str], None] = None,
    limit: int = 0,
    data_dir: Optional[PathLike] = None,
    no_bos: bool = False,
    items: Optional[PathLike] = None,
    act_bits: Optional[int] = None,
    act_group: Optional[int] = None,
    tokenizer: Optional[PathLike] = None,
    threads: int = 0,
    progress: Union[bool, ProgressFn] = True,
) -> EvalResult:
    """Evaluates a model (any file dashq reads, quantized outputs included) as
    `dashq eval` does: perplexity of the text `ppl` (ctx-token windows; with
    llamacpp=True llama-perplexity's protocol), or with kld= the KL divergence
    to distributions saved earlier (save_logits=), and zero-shot tasks scored
    the lm-evaluation-harness way (the first `limit` items; items= writes one
    JSON line per item). A task that fails raises; the others are not run then.
    Items that could not be scored are a DashqWarning naming the first."""
    if ppl is None and kld is None and not tasks:
        raise ArgumentError("evaluate needs ppl=FILE, kld=BASE or tasks=[...]")
    s = CStrings()
    prog = Progress(progress)
    result = EvalResult()
    with _Loaded(model, tokenizer, lazy=False) as ld:
        err = new_error()
        if act_bits is not None or act_group is not None:
            cfg = lib.dq_model_config(ld.m[0])
            check(lib.dq_model_set_act_quant(ld.m[0], cfg.act_bits if act_bits is None else act_bits,
                                             cfg.act_group if act_group is None else act_group, err), err)
        ppl_result = None
        if ppl is not None or kld is not None:
            pp = ffi.new("dq_perplexity_params *")
            pp.ctx, pp.llamacpp, pp.max_windows = ctx, llamacpp, chunks
            pp.save_logits, pp.kld_base, pp.n_threads = s(save_logits), s(kld), threads
            prog.install(pp.progress)
            r = ffi.new("dq_perplexity_result *")
            prog.finish(lib.dq_perplexity(ld.m[0], ld.t[0], s(ppl), pp, r, err), err)
            ppl_result = _perplexity_result(r)
        task_results = _run_tasks(ld, s, prog, tasks, limit, data_dir, no_bos, items, threads,
                                  [model, ppl, kld]) if tasks else {}
    return EvalResult(ppl_result, task_results)


def _perplexity_result(r) -> PerplexityResult:
    k = bool(r.has_kld)
    return PerplexityResult(r.ppl, r.ppl_err, r.nll, int(r.n_scored), r.n_windows, r.ctx,
                            r.kld if k else None, r.kld_err if k else None, r.kld_p99 if k else None,
                            r.same_top if k else None, r.same_top_err if k else None, r.base_ppl if k else None)


def _run_tasks(ld, s, prog, tasks, limit, data_dir, no_bos, items, threads, inputs) -> Dict[str, TaskResult]:
    names = [n.strip() for n in (tasks.split(",") if isinstance(tasks, str) else tasks) if n.strip()]
    tp = ffi.new("dq_tasks_params *")
    ins = [s(x) for x in inputs if x is not None]
    ins_arr = ffi.new("const char *[]", ins)
    tp.data_dir, tp.limit, tp.no_bos, tp.n_threads = s(data_dir), limit, no_bos, threads
    tp.items_path = s(items)
    tp.inputs, tp.n_inputs = ins_arr, len(ins)
    prog.install(tp.progress)
    err = new_error()
    runner = ffi.new("dq_task_runner **")
    check(lib.dq_task_runner_new(ld.m[0], ld.t[0], tp, runner, err), err)
    out = {}
    try:
        for name in names:
            r = ffi.new("dq_task_report *")
            prog.finish(lib.dq_task_run(runner[0], s(name), r, err), err)
            if r.n_unscored:
                warnings.warn(f"{name}: {r.n_unscored} items not scored, first: "
                              f"{ffi.string(r.first_unscored).decode('utf-8', 'replace')}", DashqWarning, stacklevel=3)
            out[name] = TaskResult(
                ffi.string(r.task).decode(), int(r.n), r.acc, r.acc_err,
                r.acc_norm if r.has_acc_norm else None, r.acc_norm_err if r.has_acc_norm else None,
                r.ppl if r.has_ppl else None, r.chance, r.majority, int(r.n_unscored + r.n_malformed),
                int(r.n_forwarded), r.seconds)
    finally:
        free_err = new_error()
        st = lib.dq_task_runner_free(runner[0], free_err)
    check(st, free_err)
    return out
