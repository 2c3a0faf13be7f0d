"""The lockstep engine (``training/lockstep.py``): K runs trained as one stack end exactly as
each run trained alone with ``train(...)``.

The reference is always the independent solo run: ``train(net, X, y, ...)`` on a fresh network
from the same seeds; nothing expected is computed by the code under test. The requirement is
agreement to 1e-12 relative in float64; the engine aims at bitwise equality (np.matmul computes
each (m, n) @ (n, h) of a stack as it computes one alone, every element-wise step is the same
IEEE operation), and bitwise equality is what these tests assert, everywhere: weights (same
dtype, same bits), every field of every history row except ``seconds``, stopped_by,
stop_reason, epochs, iterations and best_epoch. Each member stops on its own (its max_epochs,
eps, early stopping, divergence), and a member that stops or diverges leaves the others'
results unchanged. At the sweep level, ``--engine lockstep`` writes the files
``--engine processes`` writes (except timings), with any --jobs, and survives Ctrl-C + --resume.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import TINY_SWEEP, invoke, loopback_cluster

from scratchnn_cli.config import TrainConfig
from scratchnn_cli.nn.layers import Dense
from scratchnn_cli.nn.losses import LOSSES
from scratchnn_cli.nn.network import Network, short_form_layers
from scratchnn_cli.training import lockstep
from scratchnn_cli.training.lockstep import train_lockstep
from scratchnn_cli.training.loop import Trainer, train, trainer_for
from scratchnn_cli.training.snapshot import EpochRecord, TrainResult

# --------------------------------------------------------------------------- small data


@dataclass(frozen=True)
class Data:
    X: np.ndarray
    y: np.ndarray
    n_classes: int
    X_val: np.ndarray
    y_val: np.ndarray


def xor_points(n: int, seed: int = 0, n_val: int = 40) -> Data:
    """2-D normal points, class 1 where x0 * x1 > 0 (a sigmoid output); a validation set."""
    rng = np.random.default_rng([seed, 100])
    X = rng.normal(size=(n + n_val, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    return Data(X[:n], y[:n], 2, X[n:], y[n:])


def blobs(n: int = 90, seed: int = 0, n_val: int = 30) -> Data:
    """Three 2-D Gaussian blobs (a softmax output); a validation set."""
    rng = np.random.default_rng([seed, 200])
    centers = np.array([[0.0, 3.0], [3.0, -2.0], [-3.0, -2.0]])
    y = rng.integers(0, 3, size=n + n_val)
    X = centers[y] + rng.normal(size=(n + n_val, 2))
    return Data(X[:n], y[:n], 3, X[n:], y[n:])


@dataclass
class Member:
    """One run: its data, network shape, seeds and TrainConfig."""

    cfg: TrainConfig
    seed: int
    data: Data
    struct: tuple[int, ...] = (5,)
    activation: str = "tanh"
    sigma: float = 0.5
    dtype: Any = np.float64
    dropout: float = 0.0

    def network(self) -> Network:
        d = self.data
        output = "sigmoid" if d.n_classes == 2 else "softmax"
        return Network.build(
            d.X.shape[1],
            list(self.struct),
            1 if output == "sigmoid" else d.n_classes,
            self.activation,
            output,
            rng=np.random.default_rng([self.seed, 2]),
            sigma=self.sigma,
            dtype=self.dtype,
            dropout=self.dropout,
            dropout_rng=np.random.default_rng([self.seed, 4]),
        )

    def args(self) -> tuple[Any, ...]:
        d = self.data
        return d.X, d.y, d.n_classes, self.cfg, np.random.default_rng([self.seed, 3])

    def solo(self) -> tuple[Network, TrainResult]:
        """The reference: this run trained alone by ``train``."""
        net = self.network()
        result = train(
            net, *self.args(), validation=(self.data.X_val, self.data.y_val), engine="numpy"
        )
        return net, result

    def trainer(self) -> Trainer:
        return trainer_for(
            self.network(),
            *self.args(),
            validation=(self.data.X_val, self.data.y_val),
            engine="numpy",
        )


Run = tuple[Network, TrainResult]


def changed(cfg: TrainConfig, **values: Any) -> TrainConfig:
    """``cfg`` with some keys changed (validated again)."""
    return TrainConfig(**{**cfg.model_dump(), **values})


def in_lockstep(members: list[Member]) -> list[Run]:
    """The members trained by ``train_lockstep``; on_done is called once for each."""
    trainers = [m.trainer() for m in members]
    done: list[Trainer] = []
    train_lockstep(trainers, done.append)
    assert sorted(map(id, done)) == sorted(map(id, trainers))
    return [(tr.net, tr.result) for tr in trainers]


@pytest.fixture
def stacks(monkeypatch: pytest.MonkeyPatch) -> list[list[Trainer]]:
    """The members of every Stack built (so a test can see runs really were stacked)."""
    built: list[list[Trainer]] = []
    real_init = lockstep.Stack.__init__

    def spy(self: lockstep.Stack, members: Any) -> None:
        real_init(self, members)
        built.append(list(self.members))
        assert self.net.theta.shape[0] == len(self.members)

    monkeypatch.setattr(lockstep.Stack, "__init__", spy)
    return built


def row(record: EpochRecord) -> dict[str, Any]:
    """A history row without its timing."""
    fields = asdict(record)
    del fields["seconds"]
    return fields


def assert_same_run(got: Run, want: Run) -> None:
    """Bitwise the same weights, and the same history (but seconds) and stopping."""
    (net, result), (net_ref, ref) = got, want
    assert result.stopped_by == ref.stopped_by
    assert result.stop_reason == ref.stop_reason
    assert (result.epochs, result.iterations) == (ref.epochs, ref.iterations)
    assert result.best_epoch == ref.best_epoch
    assert [row(r) for r in result.history] == [row(r) for r in ref.history]
    assert net.theta.dtype == net_ref.theta.dtype
    for p, q in zip(net.params(), net_ref.params(), strict=True):
        assert p.dtype == q.dtype and p.shape == q.shape
        np.testing.assert_array_equal(p, q)  # exact: the engine is bitwise equal to solo


def assert_trained(run: Run, member: Member) -> None:
    """The run moved away from its initial weights (so equality says something)."""
    assert not np.array_equal(run[0].theta, member.network().theta)


# --------------------------------------------------------------------------- 1. every optimizer

BASE_LR = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "rmsprop": 0.005, "adam": 0.005}
BASE_LR["adamw"] = 0.005
MODES = {
    # the assignment's default: one random sample per update, drawn with replacement
    "single-sample": {"batch_size": 1, "sampling": "random", "n": 60},
    # 100 rows in batches of 16: six full batches and a partial one of 4 per epoch
    "mini-batch": {"batch_size": 16, "sampling": "shuffle", "n": 100},
    # one update per epoch on all 50 rows
    "full-batch": {"batch_size": "full", "sampling": "shuffle", "n": 50},
}


def three_members(optimizer: str, mode: str, dtype: Any = np.float64) -> list[Member]:
    """Same shape and optimizer; different lr, init and sampling seeds, L1 / L2, schedule and
    max_epochs."""
    lr, m = BASE_LR[optimizer], MODES[mode]
    data = xor_points(m["n"])
    common = {"eps": 0, "batch_size": m["batch_size"], "sampling": m["sampling"]}
    common["optimizer"] = {"name": optimizer}
    return [
        Member(TrainConfig(lr=lr, max_epochs=3, **common), 1, data, dtype=dtype),
        Member(
            TrainConfig(lr=lr / 2, max_epochs=5, l2=1e-3, lr_schedule={"name": "cosine"}, **common),
            2,
            data,
            dtype=dtype,
        ),
        Member(
            TrainConfig(lr=lr * 2, max_epochs=4, l1=1e-3, l2=1e-2, **common), 3, data, dtype=dtype
        ),
    ]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("optimizer", list(BASE_LR))
def test_lockstep_equals_solo_for_every_optimizer(
    optimizer: str, mode: str, stacks: list[list[Trainer]]
) -> None:
    members = three_members(optimizer, mode)
    solo = [m.solo() for m in members]
    got = in_lockstep(members)
    assert len(stacks[0]) == 3  # the three really trained as one stack
    for member, run, ref in zip(members, got, solo, strict=True):
        assert_same_run(run, ref)
        assert_trained(run, member)
    # each stopped on its own max_epochs; the cosine member's lr changed every epoch
    assert [r.epochs for _, r in got] == [3, 5, 4]
    assert {r.stopped_by for _, r in got} == {"max_epochs"}
    lrs = [rec.lr for rec in got[1][1].history]
    assert lrs[0] == BASE_LR[optimizer] / 2 and len(set(lrs)) == 5
    n, B = MODES[mode]["n"], MODES[mode]["batch_size"]
    batches = 1 if B == "full" else -(-n // B)
    assert [r.iterations for _, r in got] == [3 * batches, 5 * batches, 4 * batches]


# --------------------------------------------------------------------------- 2. float32


def test_float32_stays_float32_and_equals_the_float32_solo_run(
    stacks: list[list[Trainer]], monkeypatch: pytest.MonkeyPatch
) -> None:
    stacked: list[lockstep.Stack] = []
    real_run_epoch = lockstep.Stack.run_epoch

    def spy(self: lockstep.Stack, orders: Any) -> None:
        stacked.append(self)
        real_run_epoch(self, orders)

    monkeypatch.setattr(lockstep.Stack, "run_epoch", spy)
    members = three_members("adam", "mini-batch", np.float32)
    solo = [m.solo() for m in members]
    got = in_lockstep(members)
    assert len(stacks[0]) == 3
    for run, ref in zip(got, solo, strict=True):
        assert run[0].theta.dtype == np.float32
        assert_same_run(run, ref)
    stack = stacked[0]
    assert stack.net.theta.dtype == np.float32 and stack.net.dtheta.dtype == np.float32
    assert stack.Z_epoch.dtype == np.float32 and stack.X.dtype == np.float32
    assert all(a.dtype == np.float32 for a in (*stack.optimizer.m, *stack.optimizer.v))
    assert stack.l1.dtype == np.float32 and stack.l2.dtype == np.float32
    # and float32 is not float64 in disguise: the float64 runs end elsewhere
    wide = in_lockstep(three_members("adam", "mini-batch", np.float64))
    assert not np.array_equal(wide[0][0].theta.astype(np.float32), got[0][0].theta)


# --------------------------------------------------------------------------- 3. own stopping


def stopping_members() -> list[Member]:
    """Two members that stop by early stopping (restoring their best weights), one by eps,
    one by max_epochs: sgd, single-sample, on one XOR data set."""
    data = xor_points(60, seed=1)
    es = {"patience": 2, "restore_best": True}
    return [
        Member(TrainConfig(lr=2.0, eps=0, max_epochs=30, early_stopping=es), 11, data),
        Member(TrainConfig(lr=0.05, eps=2e-3, max_epochs=30), 12, data),
        Member(TrainConfig(lr=1.0, eps=0, max_epochs=30, early_stopping=es), 13, data),
        Member(TrainConfig(lr=0.2, eps=0, max_epochs=12), 14, data),
    ]


def test_each_member_stops_on_its_own_at_its_solo_epoch(stacks: list[list[Trainer]]) -> None:
    members = stopping_members()
    solo = [m.solo() for m in members]
    # the solo runs stop as intended, at different epochs (else the test proves little)
    assert [r.stopped_by for _, r in solo] == [
        "early_stopping",
        "eps",
        "early_stopping",
        "max_epochs",
    ]
    assert len({r.epochs for _, r in solo}) == 4
    assert all(r.epochs < 30 for _, r in solo)
    for _, r in (solo[0], solo[2]):
        assert "restored the weights of epoch" in r.stop_reason and r.best_epoch < r.epochs
    got = in_lockstep(members)
    assert len(stacks[0]) == 4 and len(stacks) > 1  # rebuilt smaller as members left
    for member, run, ref in zip(members, got, solo, strict=True):
        assert_same_run(run, ref)
        assert_trained(run, member)


def test_a_member_that_stops_early_leaves_the_others_unchanged() -> None:
    members = stopping_members()
    with_all = in_lockstep(members)
    for left_out in (0, 1):  # an early stopper, then the eps one
        others = [m for i, m in enumerate(members) if i != left_out]
        without = in_lockstep(others)
        kept = [run for i, run in enumerate(with_all) if i != left_out]
        for run, ref in zip(kept, without, strict=True):
            assert_same_run(run, ref)


# --------------------------------------------------------------------------- 4. divergence


def test_a_diverging_member_never_disturbs_the_others(stacks: list[list[Trainer]]) -> None:
    """As in training/stopping.py's docstring: relu, sigma 30 and a huge lr blow up; here one
    diverges in epoch 1 (lr 1000), one in epoch 3 (lr 3), in a stack with two normal runs."""
    data = blobs()
    cfg = TrainConfig(lr=0.1, eps=0, max_epochs=6)
    normal = {"struct": (8,), "activation": "relu"}
    members = [
        Member(cfg, 21, data, **normal),
        Member(changed(cfg, lr=1000.0), 22, data, sigma=30.0, **normal),
        Member(changed(cfg, lr=0.05), 23, data, **normal),
        Member(changed(cfg, lr=3.0), 24, data, sigma=30.0, **normal),
    ]
    solo = [m.solo() for m in members]
    assert [r.stopped_by for _, r in solo] == ["max_epochs", "diverged", "max_epochs", "diverged"]
    assert [r.epochs for _, r in solo] == [6, 1, 6, 3]  # diverged in epochs 1 and 3
    assert [len(r.history) for _, r in solo] == [6, 0, 6, 2]
    got = in_lockstep(members)
    assert len(stacks[0]) == 4
    for run, ref in zip(got, solo, strict=True):
        assert_same_run(run, ref)
        assert np.all(np.isfinite(run[0].theta))
    calm = in_lockstep([members[0], members[2]])  # the normal runs without the divergers
    for run, ref in zip((got[0], got[2]), calm, strict=True):
        assert_same_run(run, ref)


# --------------------------------------------------------------------------- 5. what must not stack


def test_different_training_set_sizes_train_in_separate_stacks(
    stacks: list[list[Trainer]],
) -> None:
    small, large = xor_points(100, seed=2), xor_points(101, seed=3)
    cfg = TrainConfig(
        lr=0.01, eps=0, max_epochs=4, batch_size=16, sampling="shuffle", optimizer="adam"
    )
    members = [
        Member(cfg, 31, small),
        Member(changed(cfg, lr=0.02), 32, large),
        Member(changed(cfg, max_epochs=3), 33, small),
        Member(cfg, 34, large),
    ]
    solo = [m.solo() for m in members]
    got = in_lockstep(members)
    for run, ref in zip(got, solo, strict=True):
        assert_same_run(run, ref)
    sizes = [sorted(tr.N for tr in members_) for members_ in stacks]
    assert [100, 100] in sizes and [101, 101] in sizes
    assert all(len(set(s)) == 1 for s in sizes)  # never 100 and 101 in one stack


def test_a_network_with_dropout_is_refused() -> None:
    data = xor_points(40)
    cfg = TrainConfig(lr=0.1, eps=0, max_epochs=2)
    plain, dropped = Member(cfg, 41, data), Member(cfg, 42, data, dropout=0.2)
    with pytest.raises(ValueError, match="dropout"):
        train_lockstep([plain.trainer(), dropped.trainer()])


# --------------------------------------------------------------------------- 6. Network(stack=K)


def test_a_stacked_network_views_every_array_into_theta() -> None:
    K, n_in, struct = 3, 4, [5, 2]

    def layers() -> list[Any]:
        return [*short_form_layers(struct, "tanh"), Dense(3)]

    single = Network(layers(), LOSSES["softmax"](), n_in)
    net = Network(layers(), LOSSES["softmax"](), n_in, stack=K)
    P = single.theta.size
    assert P == n_in * 5 + 5 + 5 * 2 + 2 + 2 * 3 + 3
    assert net.theta.shape == (K, P) and net.dtheta.shape == (K, P)
    shapes = [p.shape for p in single.params()]
    assert [p.shape for p in net.params()] == [(K, *s) for s in shapes]
    assert [g.shape for g in net.grads()] == [(K, *s) for s in shapes]
    for p, g in zip(net.params(), net.grads(), strict=True):
        assert np.shares_memory(p, net.theta) and not np.shares_memory(p, net.dtheta)
        assert np.shares_memory(g, net.dtheta)
    # row k of theta is network k's arrays, flattened in order
    net.theta[...] = np.arange(K * P, dtype=float).reshape(K, P)
    net.dtheta[...] = -net.theta
    for k in range(K):
        np.testing.assert_array_equal(
            np.concatenate([p[k].ravel() for p in net.params()]), net.theta[k]
        )
        np.testing.assert_array_equal(
            np.concatenate([g[k].ravel() for g in net.grads()]), net.dtheta[k]
        )


# --------------------------------------------------------------------------- 7. sweeps

# circles500, 2-fold CV of train + val (375 rows): folds train on 187 and 188 rows, so each
# network shape's group holds two stacks; 1,000 single-sample updates = 6 epochs
TINY = TINY_SWEEP
GRID = ["--grid", "train.lr=0.3,0.03", "--grid", "model.struct=[3],[6]", "--cv", 2]
SUB_RUN = re.compile(r"(tiny-p\d{3}-f\d+)$")


def sweep_in(folder: Path, *args: object, text: str = TINY) -> tuple[Any, Path | None]:
    """``scratchnn sweep`` of ``text`` into folder/runs; (result, the sweep folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "tiny.yaml"
    spec.write_text(text, encoding="utf-8")
    runs = folder / "runs"
    result = invoke("sweep", spec, *args, "--no-refit", "--runs-dir", runs)
    found = [p for p in runs.iterdir() if p.name.startswith("sweep-")] if runs.is_dir() else []
    return result, (found[0] if len(found) == 1 else None)


def sub_runs(sweep_dir: Path) -> dict[str, Path]:
    """Sub-run folders by their name (tiny-p001-f0), without the timestamp."""
    found = {}
    for p in sweep_dir.iterdir():
        match = SUB_RUN.search(p.name)
        if p.is_dir() and match:
            found[match.group(1)] = p
    return found


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def results(sweep_dir: Path) -> pd.DataFrame:
    return pd.read_csv(sweep_dir / "results.csv").drop(columns="seconds")


def history(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "history.csv").drop(columns="seconds")


def assert_same_sweep(got: Path, want: Path) -> None:
    """results.csv (but seconds), and every sub-run's model.npz and history.csv (but seconds)."""
    pd.testing.assert_frame_equal(results(got), results(want), check_exact=True)
    runs, ref_runs = sub_runs(got), sub_runs(want)
    assert sorted(runs) == sorted(ref_runs) and len(runs) == 8
    for name, run_dir in runs.items():
        with np.load(run_dir / "model.npz") as a, np.load(ref_runs[name] / "model.npz") as b:
            assert sorted(a.files) == sorted(b.files)
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name} {key}")
        pd.testing.assert_frame_equal(
            history(run_dir), history(ref_runs[name]), check_exact=True, obj=name
        )
        assert read_json(run_dir / "run.json")["status"] == "completed"


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: every sub-run trained alone."""
    result, found = sweep_in(tmp_path_factory.mktemp("processes"), *GRID, "--engine", "processes")
    assert result.exit_code == 0, result.output
    assert found is not None
    return found


@pytest.fixture(scope="module")
def stepped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    result, found = sweep_in(tmp_path_factory.mktemp("lockstep"), *GRID, "--engine", "lockstep")
    assert result.exit_code == 0, result.output
    assert found is not None
    return found


def test_a_lockstep_sweep_writes_what_a_processes_sweep_writes(
    processes: Path, stepped: Path
) -> None:
    assert_same_sweep(stepped, processes)
    for run_dir in sub_runs(stepped).values():
        assert read_json(run_dir / "run.json")["engine"] == "lockstep"
    for run_dir in sub_runs(processes).values():
        assert read_json(run_dir / "run.json").get("engine") != "lockstep"


def test_a_lockstep_sweep_on_two_jobs_equals_one_job(stepped: Path, tmp_path: Path) -> None:
    result, found = sweep_in(tmp_path, *GRID, "--engine", "lockstep", "--jobs", 2)
    assert result.exit_code == 0, result.output
    assert found is not None
    assert_same_sweep(found, stepped)
    assert {read_json(p / "run.json")["engine"] for p in sub_runs(found).values()} == {"lockstep"}


def test_auto_trains_a_tiny_network_in_lockstep(processes: Path, tmp_path: Path) -> None:
    result, found = sweep_in(tmp_path, *GRID, "--engine", "auto")
    assert result.exit_code == 0, result.output
    assert found is not None
    assert {read_json(p / "run.json").get("engine") for p in sub_runs(found).values()} == {
        "lockstep"
    }
    assert_same_sweep(found, processes)


def test_a_spec_with_dropout_under_lockstep_trains_alone(tmp_path: Path) -> None:
    text = TINY.replace("  sigma: 0.5\n", "  sigma: 0.5\n  dropout: 0.2\n")
    assert "dropout: 0.2" in text
    result, found = sweep_in(
        tmp_path, "--grid", "train.lr=0.3,0.03", "--engine", "lockstep", text=text
    )
    assert result.exit_code == 0, result.output
    assert found is not None
    frame = pd.read_csv(found / "results.csv")
    assert list(frame["status"]) == ["completed", "completed"]
    runs = sub_runs(found)
    assert len(runs) == 2
    for run_dir in runs.values():
        info = read_json(run_dir / "run.json")
        assert info["status"] == "completed" and info.get("engine") != "lockstep"
        assert (run_dir / "model.npz").is_file()


# --------------------------------------------------------------------------- 8. Ctrl-C


def test_ctrl_c_in_a_lockstep_sweep_then_resume_ends_like_an_uninterrupted_sweep(
    processes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--jobs 1 trains in this process: network [3] (points 0 and 1) first, as two stacks of
    6 epochs (its folds train on 187 and 188 rows), then network [6] (points 2 and 3). Ctrl-C
    in the 14th stacked epoch, epoch 2 of [6]'s first stack: [3]'s four sub-runs are done, the
    first stack's two are back at epoch 1 (checkpointed), the second stack's two never began."""
    real_run_epoch = lockstep.Stack.run_epoch
    calls = []

    def run_epoch(self: lockstep.Stack, orders: Any) -> None:
        calls.append(len(self.members))
        if len(calls) == 14:
            raise KeyboardInterrupt
        real_run_epoch(self, orders)

    with monkeypatch.context() as patch:
        patch.setattr(lockstep.Stack, "run_epoch", run_epoch)
        stopped, sweep_dir = sweep_in(tmp_path, *GRID, "--engine", "lockstep")
    assert stopped.exit_code == 130, stopped.output
    assert sweep_dir is not None
    assert "--resume" in stopped.output and not (sweep_dir / "results.csv").exists()
    assert calls == [2] * 14
    runs = sub_runs(sweep_dir)
    status = {name: read_json(p / "run.json") for name, p in runs.items()}
    done = sorted(n for n, info in status.items() if info["status"] == "completed")
    assert done == ["tiny-p000-f0", "tiny-p000-f1", "tiny-p001-f0", "tiny-p001-f1"]
    unfinished = sorted(set(runs) - set(done))
    assert unfinished == ["tiny-p002-f0", "tiny-p002-f1", "tiny-p003-f0", "tiny-p003-f1"]
    for name in unfinished:
        info = status[name]
        assert info["status"] == "interrupted" and info["engine"] == "lockstep"
    for name in ("tiny-p002-f0", "tiny-p003-f0"):  # the stack that was training
        assert status[name]["stop"]["epochs"] == 1
        assert status[name]["stop"]["reason"] == "interrupted during epoch 2"  # as a solo run
        assert (runs[name] / "checkpoint.npz").is_file()
        assert len(history(runs[name])) == 1
    for name in ("tiny-p002-f1", "tiny-p003-f1"):  # the stack that never began
        assert status[name]["stop"]["epochs"] == 0

    resumed = invoke("sweep", "--resume", sweep_dir, "--no-refit")
    assert resumed.exit_code == 0, resumed.output
    assert_same_sweep(sweep_dir, processes)
    for name in unfinished:
        assert read_json(runs[name] / "run.json")["resumed"][0]["from_epoch"] == (
            1 if name.endswith("f0") else 0
        )


def test_lockstep_groups_on_a_dask_cluster_equal_the_local_ones(
    stepped: Path, tmp_path: Path
) -> None:
    """Lockstep groups are units of work like sub-runs: sent to a real LocalCluster on loopback
    (reached through --scheduler like a remote one), they give the local lockstep sweep."""
    with loopback_cluster() as address:
        args = ("--engine", "lockstep", "--backend", "dask", "--scheduler", address)
        result, found = sweep_in(tmp_path, *GRID, *args)
    assert result.exit_code == 0, result.output
    assert found is not None
    assert_same_sweep(found, stepped)
    assert {read_json(p / "run.json")["engine"] for p in sub_runs(found).values()} == {"lockstep"}


def test_members_that_validate_at_different_intervals_share_a_stack(
    stacks: list[list[Trainer]],
) -> None:
    """eval_every 1, 2 and 3 in one stack: each member's validation columns (filled or empty)
    and its numbers are those of its solo run (the stack computes every member's validation
    logits at once, and hands them only to the members that evaluate that epoch)."""
    data = xor_points(60)
    members = [
        Member(TrainConfig(lr=0.1, eps=0, max_epochs=6, eval_every=every), seed, data)
        for seed, every in ((1, 1), (2, 2), (3, 3))
    ]
    runs = in_lockstep(members)
    assert [len(s) for s in stacks] == [3]
    for run, member in zip(runs, members, strict=True):
        assert_same_run(run, member.solo())
        evaluated = [r.epoch for r in run[1].history if r.val_cost is not None]
        assert evaluated == list(range(member.cfg.eval_every, 7, member.cfg.eval_every))


def test_a_run_whose_results_cannot_be_written_says_failed_and_the_unfinished_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second run to finish fails while writing its results: it and every run still
    training end with run.json failed (none stays running); the first keeps completed."""
    import yaml

    from scratchnn_cli import experiment
    from scratchnn_cli.config import build_config

    def spec(lr: float, steps: int) -> Any:
        raw = yaml.safe_load(TINY_SWEEP)
        raw["train"].update(lr=lr, max_iterations=steps)
        return build_config({**raw, "name": f"lr{lr}"}, "spec")

    configs = [spec(0.1, 250), spec(0.2, 500), spec(0.3, 750), spec(0.4, 1000)]
    real_trained, calls = experiment.RunWriter.trained, []

    def trained(self: Any) -> None:
        calls.append(self.run_dir.name)
        if len(calls) == 2:
            raise RuntimeError("no space left for the results")
        real_trained(self)

    monkeypatch.setattr(experiment.RunWriter, "trained", trained)
    with pytest.raises(RuntimeError, match="no space left"):
        experiment.run_in_lockstep(configs, tmp_path)
    status = {
        p.name.split("-", 2)[2]: read_json(p / "run.json")["status"] for p in tmp_path.iterdir()
    }
    assert status == {"lr0.1": "completed", "lr0.2": "failed", "lr0.3": "failed", "lr0.4": "failed"}
