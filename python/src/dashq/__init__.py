"""dashq: post-training quantization of Llama-family language models to 2-8 bits
(RTN, GPTQ, DASH-Q, OAC; rotations and HeRo-Q), written as GGUF files llama.cpp
runs or DASH-Q packed checkpoints, over the C library (include/dashq.h).

    import dashq
    r = dashq.quantize("model.gguf", "model-q4km.gguf", method="gptq", format="gguf",
                       type="Q4_K_M", calib="calib.txt", nsamples=32, seqlen=512)
    print(dashq.evaluate("model-q4km.gguf", ppl="wiki.test.raw", ctx=512, llamacpp=True).perplexity)

    q = dashq.gptq(W, H, bits=3, group=64)   # numpy: codes, scale, zero, dequantized
"""
from ._core import (
    ArgumentError,
    Cancelled,
    DashqError,
    DashqIOError,
    DashqMemoryError,
    DashqWarning,
    FormatError,
    NumericError,
    UnsupportedError,
)
from ._dashq_cffi import ffi as _ffi
from ._dashq_cffi import lib as _lib
from ._jobs import EvalResult, PerplexityResult, QuantizeReport, TaskResult, TensorReport, evaluate, quantize
from ._solve import Quantized, dashq, gptq, rtn, solve

__version__ = _ffi.string(_lib.dq_version()).decode()
METHODS = tuple(_ffi.string(_lib.dq_quantize_methods()).decode().split(", "))
GGUF_TYPES = tuple(_ffi.string(_lib.dq_quantize_gguf_types()).decode().replace(",", " ").split())
TASKS = tuple(_ffi.string(_lib.dq_task_names()).decode().split(", "))

__all__ = [
    "quantize", "evaluate", "solve", "gptq", "dashq", "rtn",
    "QuantizeReport", "TensorReport", "EvalResult", "PerplexityResult", "TaskResult", "Quantized",
    "DashqError", "DashqIOError", "FormatError", "UnsupportedError", "DashqMemoryError", "ArgumentError",
    "NumericError", "Cancelled", "DashqWarning", "METHODS", "GGUF_TYPES", "TASKS", "__version__",
]
