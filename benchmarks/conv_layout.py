"""Why the convolutions are channels last: one conv 3x3 "same" layer (batch 128, 14x14, 32 -> 64
channels, float32), forward and backward by im2col, written both ways and timed interleaved.

NHWC: cols (m H W, kh kw C) and one GEMM whose output is already (m, H, W, F).
NCHW: cols (m, C kh kw, H W) and a batched GEMM W (F, C kh kw) @ cols giving (m, F, H W).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/conv_layout.py (prints best of 7 each).
"""

import time

import numpy as np

rng = np.random.default_rng(0)
m, H, W, C, F, k = 128, 14, 14, 32, 64, 3
dt = np.float32
Wt = rng.normal(size=(k, k, C, F)).astype(dt)


def nhwc(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # X (m, H, W, C)
    Xp = np.pad(X, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = np.empty((m, H, W, k, k, C), dt)
    for i in range(k):
        for j in range(k):
            cols[:, :, :, i, j, :] = Xp[:, i : i + H, j : j + W, :]
    cols = cols.reshape(m * H * W, k * k * C)
    Z = (cols @ Wt.reshape(-1, F)).reshape(m, H, W, F)
    dZ2 = Z.reshape(-1, F)
    dW = cols.T @ dZ2
    dcols = (dZ2 @ Wt.reshape(-1, F).T).reshape(m, H, W, k, k, C)
    dX = np.zeros_like(Xp)
    for i in range(k):
        for j in range(k):
            dX[:, i : i + H, j : j + W, :] += dcols[:, :, :, i, j, :]
    return Z, dW


Wc = np.ascontiguousarray(Wt.transpose(3, 2, 0, 1)).reshape(F, C * k * k)  # (F, C k k)


def nchw(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # X (m, C, H, W)
    Xp = np.pad(X, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.empty((m, C, k, k, H, W), dt)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = Xp[:, :, i : i + H, j : j + W]
    cols = cols.reshape(m, C * k * k, H * W)
    Z = np.matmul(Wc, cols)  # (m, F, H W): NCHW directly
    dZ = Z
    dW = np.einsum("mfp,mkp->fk", dZ, cols, optimize=True)
    dcols = np.matmul(Wc.T, dZ).reshape(m, C, k, k, H, W)
    dX = np.zeros_like(Xp)
    for i in range(k):
        for j in range(k):
            dX[:, :, i : i + H, j : j + W] += dcols[:, :, i, j]
    return Z.reshape(m, F, H, W), dW


X = rng.normal(size=(m, H, W, C)).astype(dt)
Xc = np.ascontiguousarray(X.transpose(0, 3, 1, 2))
Za, dWa = nhwc(X)
Zb, dWb = nchw(Xc)
assert np.allclose(Za.transpose(0, 3, 1, 2), Zb, rtol=1e-3, atol=1e-2)
best = {"NHWC": 1e9, "NCHW": 1e9}
for _ in range(7):
    for name, f, x in (("NHWC", nhwc, X), ("NCHW", nchw, Xc)):
        t = time.perf_counter()
        f(x)
        best[name] = min(best[name], time.perf_counter() - t)
print(
    {k: f"{v * 1000:.1f} ms" for k, v in best.items()},
    f"NCHW/NHWC = {best['NCHW'] / best['NHWC']:.2f}",
)
