"""The compiled engine: one epoch of a dense network's training as plain loops, compiled by numba.

The same formulas as the NumPy layers (``layers/dense.py``, ``layers/activations.py``,
``losses.py``, ``regularizers.py``, ``optim/optimizers.py``), written element by element as the
course notebook wrote them, and compiled once to machine code (numba, as scikit-learn compiles
its per-sample SGD with Cython). It pays where NumPy's fixed cost per call is most of a step:
tiny networks, one sample (or a few) per update. ``nn/engines.py`` says which specs it runs and
binds a network and its optimizer to ``run_epoch``; this module is imported only when the engine
runs (importing numba takes a while).

Layout: the network's ``theta`` holds, layer after layer, W (n_in x n_out, row-major) then b
(n_out), exactly as ``Network`` lays them out; ``dtheta`` the same for the gradients, and the
optimizer's moments (velocity, mean of g, mean of g^2) are the optimizer's own flat arrays. So
every number the epoch changes lives where the NumPy engine keeps it: snapshots, checkpoints and
resume see no difference.

Speed: the step touches no NumPy array object. Every buffer is one flat array and each layer's
part of it is found by its offset (W_l's entry (i, j) is ``theta[w + i * n_out + j]``), so a step
creates no views and counts no references: only the arithmetic is left.

Division follows NumPy (x / 0 is inf or nan, never an exception): divergence is detected
after the epoch, as with the NumPy engine.

dtype: every scalar is cast to the network's dtype before it meets an array, so a float32
network computes in float32 (as NumPy does with a Python float and a float32 array).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from scratchnn_cli.nn.compiled_codes import ACTIVATION_CODES, HYPER, OUTPUT_CODES, RULES

# The integers ``nn/engines.py`` passes in, named (numba compiles them in as constants): hidden
# activations, output kinds, update rules, and positions in ``hyper``
IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU = (
    ACTIVATION_CODES[g] for g in ("identity", "sigmoid", "tanh", "relu", "leaky_relu")
)
SIGMOID_OUTPUT, SOFTMAX_OUTPUT = OUTPUT_CODES["sigmoid"], OUTPUT_CODES["softmax"]
SGD, MOMENTUM, NESTEROV, RMSPROP, ADAM, ADAMW = (
    RULES.index(r) for r in ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
)
LR, BETA1, BETA2, EPSILON, WEIGHT_DECAY, L1, L2 = (
    HYPER.index(h) for h in ("lr", "beta1", "beta2", "epsilon", "weight_decay", "l1", "l2")
)


@njit(cache=True, inline="always", error_model="numpy")
def sigmoid(z, e, one):  # numba compiles one version per dtype
    """sigma(z) = 1 / (1 + e^-z), given e = e^-|z| (which never overflows): 1 / (1 + e) for
    z >= 0, e / (1 + e) below (``one``: 1 in z's dtype)."""
    return one / (one + e) if z >= 0 else e / (one + e)


@njit(cache=True, inline="always", error_model="numpy")
def dense_forward(A, a, theta, w, n_in, n_out, Z, z, m):
    """Z = A_prev W + b for m rows: A_prev's rows from A[a], Z's from Z[z], W (n_in, n_out) from
    theta[w], then b (n_out,)."""
    b = w + n_in * n_out
    for r in range(m):
        x, out = a + r * n_in, z + r * n_out
        for j in range(n_out):  # z_j = a_0 W_0j + a_1 W_1j + ...: along the rows of W
            Z[out + j] = A[x] * theta[w + j]
        for i in range(1, n_in):
            a_i, row = A[x + i], w + i * n_out
            for j in range(n_out):
                Z[out + j] += a_i * theta[row + j]
        for j in range(n_out):
            Z[out + j] += theta[b + j]


@njit(cache=True, inline="always", error_model="numpy")
def activate(Z, A, at, size, act, alpha):
    """A = g(Z) for the ``size`` numbers from ``at``, for the hidden activation ``act``."""
    one, zero = Z.dtype.type(1.0), Z.dtype.type(0.0)
    alpha = Z.dtype.type(alpha)
    if act == SIGMOID:
        for k in range(at, at + size):
            A[k] = sigmoid(Z[k], math.exp(-abs(Z[k])), one)
    elif act == TANH:
        for k in range(at, at + size):
            A[k] = math.tanh(Z[k])
    elif act == RELU:  # max(z, 0)
        for k in range(at, at + size):
            A[k] = Z[k] if Z[k] > zero else zero
    elif act == LEAKY_RELU:  # z, or alpha z below 0
        for k in range(at, at + size):
            A[k] = Z[k] if Z[k] > zero else alpha * Z[k]
    else:
        for k in range(at, at + size):
            A[k] = Z[k]


@njit(cache=True, inline="always", error_model="numpy")
def activation_backward(dA, Z, A, at, size, act, alpha):
    """dZ = dA * g'(Z), in place on dA[:size] (Z and A from ``at``): g' = A (1 - A), 1 - A^2,
    [Z > 0], or 1 / alpha."""
    one, zero = dA.dtype.type(1.0), dA.dtype.type(0.0)
    alpha = dA.dtype.type(alpha)
    if act == SIGMOID:
        for k in range(size):
            dA[k] = dA[k] * A[at + k] * (one - A[at + k])
    elif act == TANH:
        for k in range(size):
            dA[k] = dA[k] * (one - A[at + k] * A[at + k])
    elif act == RELU:
        for k in range(size):
            if not Z[at + k] > zero:
                dA[k] = zero
    elif act == LEAKY_RELU:
        for k in range(size):
            if not Z[at + k] > zero:
                dA[k] = dA[k] * alpha


@njit(cache=True, inline="always", error_model="numpy")
def output_layer(Z, z, Y, y, m, k, output, dZ):
    """The loss on m rows of k logits (Z from Z[z], Y's rows from Y[y]), as ``losses.py``: the
    output A = sigmoid(Z) or softmax(Z) fused with its cross-entropy. Writes dZ = (A - Y) / m (no
    division for one row) and returns (the sum of the rows' costs L, how many rows the logits
    classify right): sigmoid L = log(1 + e^z) - y z, predicted 1 where z > 0; softmax
    L = logsumexp(z) - z . y, predicted the first largest z."""
    one = Z.dtype.type(1.0)
    total, hits = 0.0, 0
    for r in range(m):
        zr, yr, d = z + r * k, y + r * k, r * k
        if output == SOFTMAX_OUTPUT:
            best = 0
            for j in range(1, k):
                if Z[zr + j] > Z[zr + best]:
                    best = j
            z_max = Z[zr + best]
            sum_e = Z.dtype.type(0.0)
            z_y = 0.0
            for j in range(k):  # e_j = exp(z_j - max z), then a_j = e_j / sum e
                dZ[d + j] = math.exp(Z[zr + j] - z_max)
                sum_e += dZ[d + j]
                z_y += Z[zr + j] * Y[yr + j]
            for j in range(k):
                dZ[d + j] = dZ[d + j] / sum_e - Y[yr + j]
            total += math.log(sum_e) + z_max - z_y
            hits += Y[yr + best] == 1
        else:
            for j in range(k):
                z_j, y_j = Z[zr + j], Y[yr + j]
                e = math.exp(-abs(z_j))  # shared by A = sigma(z) and L
                dZ[d + j] = sigmoid(z_j, e, one) - y_j
                total += max(z_j, 0.0) + math.log1p(e) - y_j * z_j
            hits += (Z[zr] > 0) == (Y[yr] == 1)
        if m > 1:
            for j in range(k):
                dZ[d + j] /= m
    return total, hits


@njit(cache=True, inline="always", error_model="numpy")
def dense_backward(A, a, dZ, theta, dtheta, w, n_in, n_out, m, l1, l2):
    """dW = A_prev^T dZ (+ l1 sign(W) + l2 W), db = the sum of dZ's m rows; A_prev's rows from
    A[a], W from theta[w] and dW from dtheta[w], then b and db."""
    b = w + n_in * n_out
    for i in range(n_in):  # dW_ij = sum_r a_ri dZ_rj: one outer product per row
        a_i, row = A[a + i], w + i * n_out
        for j in range(n_out):
            dtheta[row + j] = a_i * dZ[j]
    for j in range(n_out):
        dtheta[b + j] = dZ[j]
    for r in range(1, m):
        x, d = a + r * n_in, r * n_out
        for i in range(n_in):
            a_i, row = A[x + i], w + i * n_out
            for j in range(n_out):
                dtheta[row + j] += a_i * dZ[d + j]
        for j in range(n_out):
            dtheta[b + j] += dZ[d + j]
    if l1 != 0:
        for k in range(w, b):
            dtheta[k] += l1 * np.sign(theta[k])
    if l2 != 0:
        for k in range(w, b):
            dtheta[k] += l2 * theta[k]


@njit(cache=True, inline="always", error_model="numpy")
def dense_dA_prev(dZ, theta, w, n_in, n_out, m, dA_prev):
    """dA_prev = dZ W^T for m rows (W from theta[w], before this step's update)."""
    for r in range(m):
        d, out = r * n_out, r * n_in
        for i in range(n_in):
            row = w + i * n_out
            total = dZ[d] * theta[row]
            for j in range(1, n_out):
                total += dZ[d + j] * theta[row + j]
            dA_prev[out + i] = total


@njit(cache=True, inline="always", error_model="numpy")
def update(rule, theta, g, m1, m2, hyper, t):
    """One step of the update rule on every parameter (t counts the steps, this one included):

    sgd       theta <- theta - lr g
    momentum  v <- beta v - lr g;  theta <- theta + v
    nesterov  v <- beta v - lr g;  theta <- theta + beta v - lr g
    rmsprop   s <- beta s + (1 - beta) g^2;  theta <- theta - lr g / (sqrt(s) + eps)
    adam      m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
              theta <- theta - lr m^ / (sqrt(v^) + eps), bias-corrected as in optimizers.Adam
    adamw     theta <- theta (1 - lr weight_decay), then adam
    """
    cast = theta.dtype.type
    lr, b1, b2, eps = hyper[LR], hyper[BETA1], hyper[BETA2], hyper[EPSILON]
    if rule == SGD:
        step = cast(lr)
        for k in range(theta.size):
            theta[k] -= step * g[k]
    elif rule == MOMENTUM:
        step, beta = cast(lr), cast(b1)
        for k in range(theta.size):
            m1[k] = m1[k] * beta - g[k] * step
            theta[k] += m1[k]
    elif rule == NESTEROV:
        step, beta = cast(lr), cast(b1)
        for k in range(theta.size):
            lr_g = g[k] * step
            m1[k] = m1[k] * beta - lr_g
            theta[k] = (theta[k] - lr_g) + m1[k] * beta
    elif rule == RMSPROP:
        step, beta, rest, e = cast(lr), cast(b1), cast(1.0 - b1), cast(eps)
        for k in range(theta.size):
            m1[k] = m1[k] * beta + g[k] * g[k] * rest
            theta[k] -= g[k] / (math.sqrt(m1[k]) + e) * step
    else:  # adam, adamw: the bias corrections folded into alpha and eps_hat, as Adam.step does
        if rule == ADAMW:
            shrink = cast(1.0 - lr * hyper[WEIGHT_DECAY])
            for k in range(theta.size):
                theta[k] *= shrink
        root_c2 = math.sqrt(1.0 - b2**t)
        alpha = cast(lr * root_c2 / (1.0 - b1**t))
        eps_hat = cast(eps * root_c2)
        beta1, rest1, beta2, rest2 = cast(b1), cast(1.0 - b1), cast(b2), cast(1.0 - b2)
        for k in range(theta.size):
            m1[k] = m1[k] * beta1 + g[k] * rest1
            m2[k] = m2[k] * beta2 + g[k] * g[k] * rest2
            theta[k] -= m1[k] / (math.sqrt(m2[k]) + eps_hat) * alpha


@njit(cache=True, inline="always", error_model="numpy")
def flush(x, below):
    """Set to 0 the moment entries below ``below`` (see "Subnormal numbers" in optimizers.py)."""
    if below > 0:
        for k in range(x.size):
            if abs(x[k]) < below:
                x[k] = 0


@njit(cache=True, error_model="numpy")
def run_epoch(
    theta,  # (P,) every W and b, layer after layer
    dtheta,  # (P,) their gradients
    sizes,  # (L + 1,) int64: n_0 (inputs), n_1, ..., n_L (outputs)
    acts,  # (L,) int64: each layer's activation code (the last one unused)
    alphas,  # (L,) float64: leaky_relu's slope per layer
    output,  # SIGMOID_OUTPUT or SOFTMAX_OUTPUT
    X,  # (N, n_0) the training samples
    Y,  # (N, n_L) their targets
    order,  # (n,) int64: the samples of the epoch, in order
    B,  # rows per update
    Z_out,  # (n, n_L): each sample's logits as its update saw them
    rule,  # the update rule's code
    hyper,  # float64, in the order of compiled_codes.HYPER (beta1: momentum's too; 0: unused)
    m1,  # (P,) the rule's first moment (empty when it has none)
    m2,  # (P,) its second moment (adam)
    t,  # steps taken before this epoch
    flush_every,  # steps between two flushes of the moments
    below1,  # flush threshold of m1
    below2,  # flush threshold of m2
):
    """For each batch of ``order``: forward, dZ = (A - Y) / m, backprop, step. Returns t (the
    steps taken), the sum of the samples' costs and how many the updates' logits classified right
    (what the epoch's record reports)."""
    L = sizes.size - 1
    n0, k = sizes[0], sizes[L]
    cast = theta.dtype.type
    l1, l2 = cast(hyper[L1]), cast(hyper[L2])
    # Where layer l's W_l starts in theta (b_l follows it), and where its B rows of Z_l and
    # A_l start in the buffers Zs and As
    w = np.zeros(L, np.int64)
    u = np.zeros(L + 1, np.int64)
    for l in range(L):  # noqa: E741 (l: the layer, as in the formulas)
        if l > 0:
            w[l] = w[l - 1] + sizes[l - 1] * sizes[l] + sizes[l]
        u[l + 1] = u[l] + B * sizes[l + 1]
    width = B * sizes.max()
    Zs = np.empty(u[L], theta.dtype)  # Z_1, ..., Z_L of the batch, one after the other
    As = np.empty(u[L], theta.dtype)  # A_l = g(Z_l) of the hidden layers, the same
    dZ = np.empty(width, theta.dtype)
    dA = np.empty(width, theta.dtype)
    X_rows, Y_rows = X.reshape(-1), Y.reshape(-1)
    X_batch, Y_batch = np.empty(B * n0, theta.dtype), np.empty(B * k, theta.dtype)
    Z_logits = Z_out.reshape(-1)
    n = order.size
    cost_sum, hits = 0.0, 0
    for s in range(0, n, B):
        m = min(B, n - s)
        if m == 1:  # one sample: its rows of X and Y where they are
            A0, a0, Yb, yb = X_rows, order[s] * n0, Y_rows, order[s] * k
        else:
            A0, a0, Yb, yb = X_batch, 0, Y_batch, 0
            for r in range(m):
                i = order[s + r]
                X_batch[r * n0 : (r + 1) * n0] = X_rows[i * n0 : (i + 1) * n0]
                Y_batch[r * k : (r + 1) * k] = Y_rows[i * k : (i + 1) * k]
        # forward: Z_l = A_(l-1) W_l + b_l;  A_l = g(Z_l)
        dense_forward(A0, a0, theta, w[0], n0, sizes[1], Zs, 0, m)
        for l in range(1, L):  # noqa: E741
            activate(Zs, As, u[l - 1], m * sizes[l], acts[l - 1], alphas[l - 1])
            dense_forward(As, u[l - 1], theta, w[l], sizes[l], sizes[l + 1], Zs, u[l], m)
        for j in range(m * k):  # the logits, as the NumPy engine keeps them
            Z_logits[s * k + j] = Zs[u[L - 1] + j]
        # the loss, and backward: dZ_L = (A_L - Y) / m, then per layer dW, db and dZ_(l-1)
        batch_cost, batch_hits = output_layer(Zs, u[L - 1], Yb, yb, m, k, output, dZ)
        cost_sum += batch_cost
        hits += batch_hits
        for l in range(L - 1, 0, -1):  # noqa: E741
            n_in, n_out = sizes[l], sizes[l + 1]
            dense_backward(As, u[l - 1], dZ, theta, dtheta, w[l], n_in, n_out, m, l1, l2)
            # dZ_(l-1) = (dZ_l W_l^T) * g'(Z_(l-1)), with W_l before this step's update
            dense_dA_prev(dZ, theta, w[l], n_in, n_out, m, dA)
            activation_backward(dA, Zs, As, u[l - 1], m * n_in, acts[l - 1], alphas[l - 1])
            dZ, dA = dA, dZ
        dense_backward(A0, a0, dZ, theta, dtheta, 0, n0, sizes[1], m, l1, l2)
        t += 1
        update(rule, theta, dtheta, m1, m2, hyper, t)
        if t % flush_every == 0:
            flush(m1, below1)
            flush(m2, below2)
    return t, cost_sum, hits
