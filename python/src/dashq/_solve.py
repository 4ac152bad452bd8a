"""The solvers on numpy arrays: one weight matrix and its calibration
statistic in, codes, scales, zeros and the dequantized matrix out (dq_solve).
Inputs that are C-contiguous float32 are passed to C without a copy; the GIL
is released while the C code runs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

import numpy as np

from ._core import ArgumentError, CStrings, check, new_error, options_text
from ._dashq_cffi import ffi, lib


@dataclass(frozen=True)
class Quantized:
    """One quantized matrix. Within group g of row r, w ≈ scale[r, g] * (codes[r, j] - zero[r, g]).

    codes:  (rows, qcols) uint8; qcols = cols plus zero padding up to a multiple of the group
    scale, zero: (rows, qcols // group) float32 (fp16-representable unless fp32_params)
    dequantized: (rows, cols) float32, the matrix a runtime decodes
    blocks: with a llama.cpp type, (rows, row_bytes) uint8, the rows as GGUF stores them; else None

    With a block type, group is its sub-block and scale/zero each sub-block's effective step
    (K-quants: the super-scale times the integer sub-scale); IQ4_NL's codes index its 16
    non-uniform levels, so there use dequantized or blocks.
    """

    codes: np.ndarray
    scale: np.ndarray
    zero: np.ndarray
    dequantized: np.ndarray
    blocks: Optional[np.ndarray]
    bits: int
    group: int
    method: str
    type: Optional[str]

    @property
    def padding(self) -> int:
        """Zero columns added so that the group divides the width."""
        return self.codes.shape[1] - self.dequantized.shape[1]


def _as_f32(a, name: str, ndim: int) -> np.ndarray:
    """a itself when it is C-contiguous float32 (no copy), else a float32 copy."""
    arr = np.asarray(a)
    if arr.ndim != ndim:
        raise ArgumentError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if arr.dtype != np.float32 or not arr.flags.c_contiguous or not arr.flags.aligned:
        arr = np.array(arr, dtype=np.float32, order="C")  # a copy, aligned
    if any(d > 2**31 - 1 - 128 for d in arr.shape):
        raise ArgumentError(f"{name} has shape {arr.shape}: dimensions are limited to 2^31 - 129")
    return arr


def _ptr(arr: Optional[np.ndarray], ctype: str):
    return ffi.NULL if arr is None else ffi.from_buffer(ctype, arr)


def solve(
    method: str,
    W,
    stat=None,
    bits: int = 4,
    group: int = 128,
    *,
    type: Optional[str] = None,
    options: Union[str, Mapping[str, Any], None] = None,
    fp32_params: bool = False,
    threads: int = 0,
) -> Quantized:
    """Quantizes W (rows, cols) with a method of the quantizer table ("rtn",
    "gptq", "dashq", "oac") under stat: the mean of x xᵀ over calibration
    tokens (cols, cols) for gptq/oac, of x² (cols,) for dashq, None for rtn.
    group: 16..128 or -1 (one group per row); type: a llama.cpp block type
    ("Q4_K", "IQ4_NL", ...) instead of bits and group. options: the method's
    own, as text or a dict. Same codes as `dashq quantize` writes for the
    same matrix and statistic."""
    s = CStrings()
    p = ffi.new("dq_solve_params *", lib.dq_solve_default_params())
    p.method, p.options, p.type = s(method), s(options_text(options)), s(type)
    p.bits, p.group, p.fp32_params, p.n_threads = bits, group, fp32_params, threads
    Wf = _as_f32(W, "W", 2)
    rows, cols = Wf.shape
    shape = ffi.new("dq_solve_shape *")
    err = new_error()
    check(lib.dq_solve_plan(p, rows, cols, shape, err), err)
    kind = ffi.string(shape.stat).decode()
    sf = None
    if stat is not None:
        want = {"hessian": 2, "diagonal": 1}.get(kind)
        if want is None:
            raise ArgumentError(f"method {method} takes no calibration statistic")
        sf = _as_f32(stat, "H" if want == 2 else "h", want)
        if sf.shape != ((cols, cols) if want == 2 else (cols,)):
            raise ArgumentError(
                f"the {kind} of a {rows} x {cols} W must have shape "
                f"{(cols, cols) if want == 2 else (cols,)}, got {sf.shape}"
            )
    codes = np.empty((rows, shape.qcols), np.uint8)
    scale = np.empty((rows, shape.groups_per_row), np.float32)
    zero = np.empty((rows, shape.groups_per_row), np.float32)
    deq = np.empty((rows, cols), np.float32)
    blocks = np.empty((rows, shape.row_bytes), np.uint8) if shape.row_bytes else None
    st = lib.dq_solve(
        p, _ptr(Wf, "float[]"), rows, cols, _ptr(sf, "float[]"), 0 if sf is None else sf.size,
        _ptr(codes, "uint8_t[]"), _ptr(scale, "float[]"), _ptr(zero, "float[]"), _ptr(deq, "float[]"),
        _ptr(blocks, "uint8_t[]"), err,
    )
    check(st, err)
    return Quantized(codes, scale, zero, deq, blocks, shape.bits, shape.group, method, type)


def gptq(
    W, H, bits: int = 4, group: int = 128, *, act_order: bool = False, sym: bool = False, mse: bool = False,
    percdamp: Optional[float] = None, type: Optional[str] = None, fp32_params: bool = False, threads: int = 0,
) -> Quantized:
    """GPTQ (Frantar et al., 2023) as the IST-DASLab reference runs it, on H =
    mean x xᵀ (any positive multiple; the reference's 2/n Σ x xᵀ gives the
    same codes). percdamp: damping as a fraction of mean diag(H) (0.01);
    act_order: columns by descending diag(H) with static groups; mse: the
    reference's clipping grid. fp32_params=True keeps scales and zeros in
    fp32 as the reference does (default fp16, as checkpoints store them)."""
    opts = {"act_order": act_order, "sym": sym, "mse": mse, "percdamp": percdamp}
    return solve("gptq", W, H, bits, group, type=type, options=opts, fp32_params=fp32_params, threads=threads)


def dashq(
    W, h, bits: int = 4, group: int = 128, *, iters: Optional[int] = None, eps: Optional[float] = None,
    starts: Optional[int] = None, sym: bool = False, reweight: Optional[str] = None,
    reweight_param: Optional[float] = None, type: Optional[str] = None, fp32_params: bool = False,
    threads: int = 0,
) -> Quantized:
    """DASH-Q: per (row, group) weighted least squares under the diagonal
    Hessian h = mean x² (cols,), alternating exact rounding and a closed-form
    scale and offset. iters: least-squares iterations per group (20); eps:
    dead-channel floor h + eps·mean(h) (1e-3); reweight: none, huber, power."""
    opts = {"iters": iters, "eps": eps, "starts": starts, "sym": sym, "reweight": reweight,
            "reweight_param": reweight_param}
    return solve("dashq", W, h, bits, group, type=type, options=opts, fp32_params=fp32_params, threads=threads)


def rtn(
    W, bits: int = 4, group: int = 128, *, sym: bool = False, mse: bool = False, type: Optional[str] = None,
    fp32_params: bool = False, threads: int = 0,
) -> Quantized:
    """Round to nearest: each group's min-max range (mse: GPTQ's clipping grid)."""
    return solve("rtn", W, None, bits, group, type=type, options={"sym": sym, "mse": mse},
                 fp32_params=fp32_params, threads=threads)
