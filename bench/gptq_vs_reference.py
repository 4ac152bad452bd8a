#!/usr/bin/env python3
"""GPTQ solve time: dashq against the IST-DASLab reference (PyTorch, CPU) on
the same W and H, plus DASH-Q's solve on the same W and diag(H). Shapes run up
to Llama-3-8B's down_proj (4096 x 14336). The reference's gptq.py/quant.py are
not part of this repository: fetch github.com/IST-DASLab/gptq and pass its
folder. Both sides use every online core (torch.set_num_threads). Solve time
only: H is given, as both would have accumulated it during calibration.

  /usr/bin/python3 bench/gptq_vs_reference.py GPTQ_DIR [BUILD_DIR] [--max-cols N]
With the Python package importable (a venv of Debian's python3 with
--system-site-packages for torch, then pip install ./python), the same solve
through dashq.gptq on the numpy arrays gets its own column.
Prints a markdown table; W4 g128, asymmetric, fp32 parameters, no act-order."""
import contextlib, io, os, subprocess, sys, tempfile, time, types
import numpy as np
import torch

args = [a for a in sys.argv[1:] if not a.startswith("--")]
gptq_dir = args[0]
build = args[1] if len(args) > 1 else "build"
max_cols = int(sys.argv[sys.argv.index("--max-cols") + 1]) if "--max-cols" in sys.argv else 14336
sys.modules["transformers"] = types.SimpleNamespace(Conv1D=type("Conv1D", (), {}))
sys.path.insert(0, gptq_dir)
torch.cuda.synchronize = lambda *a: None
import gptq as ref  # noqa: E402
import quant as refq  # noqa: E402
try:  # the Python package (pip install ./python into this interpreter's environment)
    import dashq  # noqa: E402
except ImportError:
    dashq = None

ncpu = os.cpu_count()
torch.set_num_threads(ncpu)

def problem(rows, cols, seed):
    """W ~ N(0, 0.02²); H = BBᵀ/k + small diagonal: a calibration Hessian of
    rank k (here 2048 tokens), with a spread of channel scales."""
    g = np.random.default_rng(seed)
    W = (0.02 * g.standard_normal((rows, cols))).astype(np.float32)
    k = 2048
    B = g.standard_normal((cols, k)).astype(np.float32) * np.exp(g.normal(0, 0.5, cols)).astype(np.float32)[:, None]
    H = (B @ B.T) / k
    H[np.diag_indices(cols)] += 1e-3
    return W, H.astype(np.float32)

def time_reference(W, H):
    layer = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
    layer.weight.data = torch.tensor(W)
    g = ref.GPTQ(layer)
    g.quantizer = refq.Quantizer()
    g.quantizer.configure(4, perchannel=True, sym=False, mse=False)
    g.H = torch.tensor(H)
    g.nsamples = 1
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its own time and error
        t0 = time.perf_counter()
        g.fasterquant(blocksize=128, percdamp=0.01, groupsize=128)
        return time.perf_counter() - t0

def time_ours(method, W, S, tmp):
    W.tofile(f"{tmp}/W.f32"); S.tofile(f"{tmp}/S.f32")
    out = subprocess.run([f"{build}/tests/quant_tool", method, "4", "128", "0", "0", f"{tmp}/W.f32",
                          str(W.shape[0]), str(W.shape[1]), f"{tmp}/S.f32", f"{tmp}/out"],
                         check=True, capture_output=True, text=True).stdout
    return float(out.split()[1])

def time_python(W, H):
    """dashq.gptq on the numpy arrays: the same solve through the Python package."""
    t0 = time.perf_counter()
    dashq.gptq(W, H, 4, 128, fp32_params=True)
    return time.perf_counter() - t0

print(f"GPTQ solve, W4 g128, {ncpu} threads (torch {torch.__version__}"
      f"{', dashq ' + dashq.__version__ + ' from ' + os.path.dirname(dashq.__file__) if dashq else ''})\n")
py = "dashq.gptq from Python (s) | speed-up |" if dashq else ""
print(f"| W shape | reference (s) | dashq GPTQ (s) | speed-up | {py} dashq DASH-Q (s) | GPTQ / DASH-Q |")
print("|---|---|---|---|---|---|" + ("---|---|" if dashq else ""))
with tempfile.TemporaryDirectory() as tmp:
    for rows, cols in [(1024, 1024), (4096, 4096), (4096, 14336)]:
        if cols > max_cols:
            continue
        W, H = problem(rows, cols, cols)
        tr = time_reference(W, H)
        tg = time_ours("gptq", W, H, tmp)
        td = time_ours("dashq", W, np.ascontiguousarray(np.diag(H)).astype(np.float32), tmp)
        tp = time_python(W, H) if dashq else 0
        py = f"{tp:.2f} | {tr/tp:.2f}x |" if dashq else ""
        print(f"| {rows}x{cols} | {tr:.2f} | {tg:.2f} | {tr/tg:.2f}x | {py} {td:.3f} | {tg/td:.0f}x |", flush=True)
