"""dashq.gptq / dashq.dashq / dashq.rtn / dashq.solve on numpy arrays."""
import threading
import time

import numpy as np
import pytest

import dashq
from dashq._solve import _as_f32


def gut6l_wq5(shared, rows=64):
    """The first rows of gut6l's layer-5 wq (llama2.c layout), as the fixture's W."""
    off = 28 + 4 * (4096 * 256 + 6 * 256 + 5 * 256 * 256)
    return np.fromfile(shared / "models/gut6l/gut6l.bin", np.float32, rows * 256, offset=off).reshape(rows, 256)


def problem(rows=32, cols=256, seed=0):
    rng = np.random.default_rng(seed)
    W = (0.05 * rng.standard_normal((rows, cols))).astype(np.float32)
    X = rng.standard_normal((4 * cols, cols)).astype(np.float32) + 0.5 * rng.standard_normal((4 * cols, 1))
    X[:, ::17] *= 10
    X[:, 3] = 0
    H = (X.T @ X / len(X)).astype(np.float32)
    return W, H


@pytest.mark.parametrize("tag,bits,group,act", [("w3g64", 3, 64, False), ("w2g32_act", 2, 32, True),
                                                ("w4g-1", 4, -1, False)])
def test_gptq_equals_ist_daslab_reference(shared, fixtures, tag, bits, group, act):
    """The committed outputs of the reference (tests/fixtures/gptq/SOURCE.txt) on the same W and H."""
    W = gut6l_wq5(shared)
    H = np.fromfile(fixtures / "gptq/H.f32", np.float32).reshape(256, 256)
    q = dashq.gptq(W, H, bits, group, act_order=act, fp32_params=True)
    want = np.fromfile(fixtures / f"gptq/{tag}.q", np.uint8).reshape(64, 256)
    assert (q.codes == want).mean() >= 0.999
    np.testing.assert_allclose(q.scale.ravel(), np.fromfile(fixtures / f"gptq/{tag}.scale", np.float32), rtol=1e-6)
    np.testing.assert_array_equal(q.zero.ravel(), np.fromfile(fixtures / f"gptq/{tag}.zero", np.float32))


def test_dequantized_is_scale_times_codes_minus_zero():
    W, H = problem(16, 200)  # 200 = 3 groups of 64 + 8: padded to 256
    for q in (dashq.gptq(W, H, 3, 64), dashq.dashq(W, np.diag(H), 3, 64), dashq.rtn(W, 3, 64)):
        assert q.codes.shape == (16, 256) and q.scale.shape == (16, 4) and q.padding == 56
        assert q.codes.max() <= 7
        full = np.repeat(q.scale, 64, axis=1) * (q.codes - np.repeat(q.zero, 64, axis=1))
        np.testing.assert_array_equal(q.dequantized, full[:, :200])
        assert np.linalg.norm(q.dequantized - W) < 0.5 * np.linalg.norm(W)
    r = dashq.rtn(W, 3, 64)  # round to nearest: within half a step of each weight
    assert (np.abs(r.dequantized - W) <= np.repeat(r.scale, 64, axis=1)[:, :200] / 2 + 1e-7).all()


def test_calibrated_methods_beat_rtn_on_the_output():
    W, H = problem(64, 256)
    err = lambda q: float(np.trace((W - q.dequantized) @ H @ (W - q.dequantized).T))  # noqa: E731
    rtn, gptq, dq = dashq.rtn(W, 3, 64), dashq.gptq(W, H, 3, 64), dashq.dashq(W, np.diag(H).copy(), 3, 64)
    assert err(gptq) < 0.8 * err(rtn) and err(dq) < err(rtn)


def test_zero_copy_and_layouts(monkeypatch):
    W, H = problem()
    assert _as_f32(W, "W", 2) is W  # C-contiguous float32: passed as it is
    passed = []
    real_ptr = dashq._solve._ptr
    monkeypatch.setattr(dashq._solve, "_ptr", lambda arr, t: passed.append(arr) or real_ptr(arr, t))
    dashq.gptq(W, H, 4, 128)
    assert passed[0] is W and passed[1] is H  # the caller's own buffers reach C
    monkeypatch.undo()
    unaligned = np.frombuffer(b"\0" + W.tobytes(), np.float32, W.size, offset=1).reshape(W.shape)
    assert not unaligned.flags.aligned and _as_f32(unaligned, "W", 2).flags.aligned
    Wf = np.asfortranarray(W)
    assert _as_f32(Wf, "W", 2) is not Wf
    a = dashq.gptq(W, H, 4, 128)
    for W2, H2 in ((Wf, H), (W.astype(np.float64), H.astype(np.float64)), (W.tolist(), H)):
        b = dashq.gptq(W2, H2, 4, 128)
        np.testing.assert_array_equal(a.codes, b.codes)
    W.setflags(write=False)  # read-only inputs are fine: C only reads them
    np.testing.assert_array_equal(dashq.gptq(W, H, 4, 128).codes, a.codes)


def test_threads_do_not_change_the_result():
    W, H = problem(64, 512)
    for f in (lambda t: dashq.gptq(W, H, 3, 128, threads=t), lambda t: dashq.dashq(W, np.diag(H).copy(), 2, 32,
                                                                                    threads=t)):
        a, b = f(1), f(2)
        np.testing.assert_array_equal(a.codes, b.codes)
        np.testing.assert_array_equal(a.scale, b.scale)


def test_gil_is_released():
    """Python threads run while one long C solve works (holding the GIL, the
    main loop below could not run at all until the solve returned)."""
    W, H = problem(2048, 2048)
    started, took = threading.Event(), []

    def work():
        started.set()
        t0 = time.perf_counter()
        dashq.gptq(W, H, 3, 128, threads=1)
        took.append(time.perf_counter() - t0)

    th = threading.Thread(target=work)
    th.start()
    started.wait()
    ticks = 0
    while th.is_alive():
        ticks += 1
        time.sleep(0.002)
    th.join()
    assert took[0] > 0.2  # one call long enough to tell
    assert ticks >= 20


def test_q4_0_blocks_decode_to_the_dequantized_matrix():
    """Q4_0 as ggml stores it: an fp16 scale d, then 16 bytes of nibbles; x = d · (q − 8)."""
    W, H = problem(8, 256)
    q = dashq.dashq(W, np.diag(H).copy(), type="Q4_0")
    assert q.blocks.shape == (8, 8 * 18) and q.group == 32 and q.bits == 4
    b = q.blocks.reshape(8, 8, 18)
    d = b[:, :, :2].copy().view(np.float16).astype(np.float32)
    nib = b[:, :, 2:]
    codes = np.concatenate([nib & 15, nib >> 4], axis=2).astype(np.float32)  # low nibbles first 16, then high
    np.testing.assert_array_equal((d * (codes - 8)).reshape(8, 256), q.dequantized)


@pytest.mark.parametrize("call,exc,says", [
    (lambda W, H: dashq.gptq(W[0], H), dashq.ArgumentError, "W must be 2-dimensional"),
    (lambda W, H: dashq.gptq(W, H[:10]), dashq.ArgumentError, "must have shape (256, 256)"),
    (lambda W, H: dashq.gptq(W, None), dashq.ArgumentError, "needs the hessian"),
    (lambda W, H: dashq.dashq(W, H), dashq.ArgumentError, "must be 1-dimensional"),
    (lambda W, H: dashq.rtn(W, 9), dashq.ArgumentError, "bits must be 2..8"),
    (lambda W, H: dashq.rtn(W, 4, 48), dashq.ArgumentError, "group size must be"),
    (lambda W, H: dashq.solve("gptz", W, H), dashq.ArgumentError, "unknown method gptz"),
    (lambda W, H: dashq.solve("gptq", W, H, options={"act_ordr": True}), ValueError, "no option 'act_ordr'"),
    (lambda W, H: dashq.solve("rtn", W, np.diag(H)), dashq.ArgumentError, "takes no calibration statistic"),
    (lambda W, H: dashq.rtn(W[:, :128], type="Q4_K"), dashq.ArgumentError, "not a multiple of Q4_K's block of 256"),
    (lambda W, H: dashq.rtn(W[:, :0]), dashq.ArgumentError, "W is 32 x 0"),
])
def test_bad_inputs_raise_with_the_library_message(call, exc, says):
    W, H = problem()
    with pytest.raises(exc) as e:
        call(W, H)
    assert says in str(e.value)


def test_non_finite_and_negative_curvature():
    W, H = problem()
    W[2, 7] = np.nan
    with pytest.raises(dashq.NumericError, match=r"W\[2, 7\] is not finite"):
        dashq.gptq(W, H)
    W, H = problem()
    H[5, 5] = -1
    with pytest.raises(dashq.ArgumentError, match=r"diag\(H\)\[5\] = -1 is negative"):
        dashq.gptq(W, H)
    e = dashq.ArgumentError("x")
    assert isinstance(e, ValueError) and isinstance(e, dashq.DashqError)
