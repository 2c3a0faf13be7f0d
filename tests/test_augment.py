"""data/augment.py (Augmenter, the transform primitives), data.augment in the schema, and the
augmentation grid of report/plots.py, and augmentation inside training (a resumed run sees the
same augmented batches). No timing is asserted (see the module docstring)."""

from __future__ import annotations

import inspect
import math
import subprocess
import sys

import numpy as np
import pytest

from scratchnn_cli.assembly import augmenter as spec_augmenter
from scratchnn_cli.assembly import network_for_dataset, training_set
from scratchnn_cli.config import validate_config
from scratchnn_cli.data import load_dataset
from scratchnn_cli.data.augment import (
    ERASE_AREA,
    Augmenter,
    augmentation_examples,
    erase_boxes,
    erase_images,
    hflip_images,
    rotate_images,
    shift_images,
)
from scratchnn_cli.errors import ConfigError
from scratchnn_cli.report.plots import augmentation_png, plot_augmentation
from scratchnn_cli.streams import training_streams
from scratchnn_cli.training import Hooks, train

ALL_ON = {"hflip": True, "shift": 2, "rotate": 20.0, "noise": 0.1, "erase": 0.5}


def images(m: int = 16, H: int = 8, W: int = 8, C: int = 1, seed: int = 0, dtype=np.float64):
    """Random images in [0.1, 1) (no pixel equals the fill 0, no image is symmetric)."""
    return np.random.default_rng(seed).uniform(0.1, 1.0, (m, H, W, C)).astype(dtype)


def augmenter(config=None, shape=(8, 8, 1), seed: int = 0, **kwargs) -> Augmenter:
    return Augmenter(
        ALL_ON if config is None else config, shape, np.random.default_rng(seed), **kwargs
    )


# --------------------------------------------------------------------------- the contract


def test_only_x_is_seen_and_sample_order_is_kept() -> None:
    params = list(inspect.signature(Augmenter.__call__).parameters)
    assert params == ["self", "X"]  # no labels go in, so none can change
    # image n is the constant n + 1: after any transform its largest value is still n + 1
    # (shift < half the size and erase <= 20% keep some of it; fill is 0), so rows kept order
    m = 64
    X = np.broadcast_to(np.arange(1.0, m + 1).reshape(m, 1, 1, 1), (m, 8, 8, 1)).copy()
    out = augmenter({**ALL_ON, "noise": 0.0, "erase": 1.0})(X)
    np.testing.assert_allclose(out.max(axis=(1, 2, 3)), np.arange(1.0, m + 1), rtol=1e-12)
    assert out.min() >= 0


def test_same_seed_same_output_different_seed_differs() -> None:
    X = images()
    a, b, c = augmenter(seed=7)(X), augmenter(seed=7)(X), augmenter(seed=8)(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_state_round_trip_repeats_the_output() -> None:
    X = images()
    aug = augmenter(seed=3)
    state = aug.state()
    first, second = aug(X), aug(X)
    assert not np.array_equal(first, second)  # the generator moved on
    aug.set_state(state)
    np.testing.assert_array_equal(aug(X), first)
    other = augmenter(seed=99)
    other.set_state(state)
    np.testing.assert_array_equal(other(X), first)


def test_draws_and_order_as_documented() -> None:
    """flip, rotate, shift, noise, erase: the primitives, with the draws in that order."""
    X = images(m=50, H=10, W=10, C=2)
    out = augmenter(ALL_ON, shape=(10, 10, 2), seed=21)(X)
    rng = np.random.default_rng(21)
    m = len(X)
    Y = hflip_images(X, rng.random(m) < 0.5)
    Y = rotate_images(Y, rng.uniform(-20.0, 20.0, m))
    Y = shift_images(Y, *rng.integers(-2, 2, size=(2, m), endpoint=True))
    Y = Y + 0.1 * rng.standard_normal(Y.shape)
    chosen = rng.random(m) < 0.5
    top, left, h, w = erase_boxes(rng, m, 10, 10)
    Y = erase_images(Y, top, left, np.where(chosen, h, 0), w)
    np.testing.assert_array_equal(out, Y)


def test_input_untouched_read_only_accepted_new_array_returned() -> None:
    X = images().reshape(16, -1)
    keep = X.copy()
    X.setflags(write=False)
    for config in (ALL_ON, {"hflip": True}, {"noise": 0.2}):
        out = augmenter(config)(X)
        np.testing.assert_array_equal(X, keep)
        assert out.flags.writeable
        assert not np.shares_memory(out, X)
        out[...] = -1.0  # the result may be written to
        np.testing.assert_array_equal(X, keep)


def test_nothing_on_is_a_copy() -> None:
    X = images()
    out = augmenter({})(X)
    np.testing.assert_array_equal(out, X)
    assert not np.shares_memory(out, X)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", [ALL_ON, {"rotate": 30.0}, {"noise": 0.5}, {"erase": 1.0}])
def test_dtype_and_shape_kept(dtype, config) -> None:
    X = images(dtype=dtype)
    for batch in (X, X.reshape(len(X), -1)):
        out = augmenter(config)(batch)
        assert out.dtype == dtype
        assert out.shape == batch.shape


def test_flat_rows_and_nhwc_give_the_same_result() -> None:
    X = images(m=10, H=6, W=5, C=3)
    flat = X.reshape(10, -1)
    a = augmenter(shape=(6, 5, 3), seed=4)(X)
    b = augmenter(shape=(6, 5, 3), seed=4)(flat)
    assert b.shape == flat.shape
    np.testing.assert_array_equal(a.reshape(10, -1), b)


def test_wrong_shape_or_dtype_refused() -> None:
    aug = augmenter()
    with pytest.raises(ValueError, match=r"\(m, 64\) or \(m, 8, 8, 1\)"):
        aug(np.zeros((4, 63)))
    with pytest.raises(ValueError, match="got \\(4, 8, 8\\)"):
        aug(np.zeros((4, 8, 8)))
    with pytest.raises(TypeError, match="floating-point"):
        aug(np.zeros((4, 64), dtype=np.uint8))


def test_augmenter_checks_its_settings() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="below half the image size"):
        Augmenter({"shift": 4}, (8, 8), rng)
    Augmenter({"shift": 3}, (8, 8), rng)  # (H, W) means one channel
    with pytest.raises(ValueError, match="unknown augmentation 'flip'"):
        Augmenter({"flip": True}, (8, 8, 1), rng)
    with pytest.raises(ValueError, match="rotate"):
        Augmenter({"rotate": 181}, (8, 8, 1), rng)
    with pytest.raises(ValueError, match="shift"):
        Augmenter({"shift": True}, (8, 8, 1), rng)
    with pytest.raises(TypeError, match="Generator"):
        Augmenter({"hflip": True}, (8, 8, 1), np.random.RandomState(0))


def test_built_from_the_config_section() -> None:
    config = validate_config({"data": {"dataset": "digits", "augment": ALL_ON}}, "spec.yaml")
    X = images()
    a = Augmenter(config.data.augment, (8, 8, 1), np.random.default_rng(5))(X)
    b = Augmenter(ALL_ON, (8, 8, 1), np.random.default_rng(5))(X)
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- hflip


def test_hflip_primitive() -> None:
    X = images(m=4)
    out = hflip_images(X, np.array([True, False, True, False]))
    np.testing.assert_array_equal(out[[0, 2]], X[[0, 2], :, ::-1])
    np.testing.assert_array_equal(out[[1, 3]], X[[1, 3]])


def test_hflip_flips_exactly_about_half() -> None:
    X = images(m=1000, H=5, W=7, C=2)
    out = augmenter({"hflip": True}, shape=(5, 7, 2), seed=11)(X)
    flipped = np.all(out == X[:, :, ::-1], axis=(1, 2, 3))
    kept = np.all(out == X, axis=(1, 2, 3))
    assert np.all(flipped ^ kept)  # each image exactly one of the two (none is symmetric)
    assert 420 <= flipped.sum() <= 580  # Binomial(1000, 0.5): 5 standard deviations


# --------------------------------------------------------------------------- shift


def rolled(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """np.roll by (dy, dx), the pixels that wrapped around set to 0."""
    out = np.roll(image, (dy, dx), axis=(0, 1))
    if dy > 0:
        out[:dy] = 0
    elif dy < 0:
        out[dy:] = 0
    if dx > 0:
        out[:, :dx] = 0
    elif dx < 0:
        out[:, dx:] = 0
    return out


def test_shift_primitive_is_roll_with_zero_fill() -> None:
    X = images(m=6, H=7, W=9, C=2)
    dy = np.array([0, 2, -3, 1, 0, -1])
    dx = np.array([0, -1, 4, 3, -2, 0])
    out = shift_images(X, dy, dx)
    for n in range(6):
        np.testing.assert_array_equal(out[n], rolled(X[n], dy[n], dx[n]))
    np.testing.assert_array_equal(out[0], X[0])


def test_shift_fill_value() -> None:
    X = images(m=1)
    out = shift_images(X, [1], [0], fill=0.5)
    np.testing.assert_array_equal(out[0, 0], 0.5)
    np.testing.assert_array_equal(out[0, 1:], X[0, :-1])


def test_augmenter_shifts_stay_within_the_bound() -> None:
    X = images(m=400)
    out = augmenter({"shift": 2}, seed=2)(X)
    offsets = set()
    for n in range(len(X)):
        matches = [
            (dy, dx)
            for dy in range(-3, 4)
            for dx in range(-3, 4)
            if np.array_equal(out[n], rolled(X[n], dy, dx))
        ]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert offsets == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}  # all 25 drawn


# --------------------------------------------------------------------------- rotate


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rotate_by_zero_is_identity_and_by_90_is_rot90(dtype) -> None:
    X = images(m=5, H=9, W=9, C=2, dtype=dtype)
    np.testing.assert_array_equal(rotate_images(X, np.zeros(5)), X)
    for degrees, k in ((90, 1), (-90, -1), (180, 2), (270, 3)):
        np.testing.assert_allclose(
            rotate_images(X, np.full(5, degrees)), np.rot90(X, k, axes=(1, 2)), atol=1e-6
        )


def test_rotate_matches_scipy_bilinear() -> None:
    from scipy import ndimage  # scikit-learn depends on SciPy: always installed

    X = images(m=3, H=9, W=12, C=2)
    angles = np.array([17.0, -133.0, 45.0])
    out = rotate_images(X, angles, fill=0.25)
    for n in range(3):
        expected = ndimage.rotate(
            X[n], angles[n], axes=(1, 0), reshape=False, order=1, mode="grid-constant", cval=0.25
        )
        np.testing.assert_allclose(out[n], expected, atol=1e-12)


def test_rotate_fills_the_corners_and_keeps_the_centre() -> None:
    X = np.ones((1, 9, 9, 1))
    out = rotate_images(X, [45.0])[0, :, :, 0]
    assert out[0, 0] == 0 and out[-1, -1] == 0  # corners come from outside the image
    assert out[4, 4] == pytest.approx(1.0)


def test_augmenter_angles_within_the_bound() -> None:
    # a single bright pixel right of the centre moves on a circle; its angle is the rotation
    m, size = 300, 41
    X = np.zeros((m, size, size, 1))
    X[:, 20, 35] = 1.0
    out = augmenter({"rotate": 30.0}, shape=(size, size, 1), seed=6)(X)[..., 0]
    ii, jj = np.mgrid[:size, :size]
    weight = out.sum(axis=(1, 2))
    yc = (out * ii).sum(axis=(1, 2)) / weight
    xc = (out * jj).sum(axis=(1, 2)) / weight
    angles = np.degrees(np.arctan2(20 - yc, xc - 20))  # counter-clockwise as displayed
    assert np.all(np.abs(angles) <= 30.5)
    assert angles.min() < -25 and angles.max() > 25  # the whole range is used
    assert abs(angles.mean()) < 3.0  # symmetric: uniform on [-30, 30] has sd 17.3 / sqrt(300)


# --------------------------------------------------------------------------- noise


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("std", [0.05, 0.5])
def test_noise_has_the_requested_std(std, dtype) -> None:
    X = images(m=500, dtype=dtype)  # 32000 values: the sample std is within 0.4% of std (1 sd)
    out = augmenter({"noise": std}, seed=9)(X)
    diff = out.astype(np.float64) - X
    assert diff.std() == pytest.approx(std, rel=0.03)
    assert abs(diff.mean()) < 4 * std / math.sqrt(diff.size)


def test_noise_not_clipped_unless_asked() -> None:
    X = images(m=100)
    out = augmenter({"noise": 1.0}, seed=1)(X)
    assert out.min() < 0 and out.max() > 1
    clipped = augmenter({"noise": 1.0}, seed=1, clip=(0.0, 1.0))(X)
    assert clipped.min() == 0.0 and clipped.max() == 1.0
    np.testing.assert_array_equal(clipped, np.clip(out, 0.0, 1.0))


# --------------------------------------------------------------------------- erase


def test_erase_primitive() -> None:
    X = images(m=2, H=6, W=6, C=2)
    out = erase_images(X, np.array([1, 0]), np.array([2, 0]), np.array([3, 0]), np.array([2, 4]))
    expected = X.copy()
    expected[0, 1:4, 2:4] = 0
    np.testing.assert_array_equal(out, expected)  # height 0: image 1 untouched


@pytest.mark.parametrize("shape", [(28, 28, 1), (8, 8, 1), (20, 12, 3)])
def test_erase_sets_one_rectangle_of_the_expected_area(shape) -> None:
    H, W, C = shape
    X = np.ones((500, H, W, C))
    out = augmenter({"erase": 1.0}, shape=shape, seed=5)(X)
    erased = out[..., 0] == 0
    assert np.all((out == 0) == erased[..., None])  # every channel
    areas = erased.sum(axis=(1, 2))
    for n in range(len(X)):
        rows, cols = np.flatnonzero(erased[n].any(axis=1)), np.flatnonzero(erased[n].any(axis=0))
        box = np.zeros((H, W), dtype=bool)
        box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
        np.testing.assert_array_equal(erased[n], box)  # a filled rectangle
    lo, hi = ERASE_AREA
    assert areas.min() >= math.ceil(lo * H * W) and areas.max() <= math.floor(hi * H * W)
    # the area fraction is spread over the range, not stuck at one end
    assert areas.min() < 0.06 * H * W and areas.max() > 0.15 * H * W


def test_erase_boxes_fit_the_image() -> None:
    top, left, h, w = erase_boxes(np.random.default_rng(0), 2000, 10, 30)
    assert np.all(top >= 0) and np.all(top + h <= 10) and np.all(h >= 1)
    assert np.all(left >= 0) and np.all(left + w <= 30) and np.all(w >= 1)


def test_erase_probability() -> None:
    X = images(m=4000)
    out = augmenter({"erase": 0.3}, seed=8)(X)
    erased = np.any(out == 0, axis=(1, 2, 3))
    assert 1070 <= erased.sum() <= 1330  # Binomial(4000, 0.3): 4.5 standard deviations
    np.testing.assert_array_equal(out[~erased], X[~erased])


# --------------------------------------------------------------------------- the examples grid


@pytest.mark.slow
def test_augmentation_examples_and_png(tmp_path) -> None:
    X = images(m=20).reshape(20, -1)
    aug = augmenter(seed=1)
    originals, augmented = augmentation_examples(X, aug, n=5, per=3)
    assert originals.shape == (5, 8, 8, 1)
    np.testing.assert_array_equal(originals.reshape(5, -1), X[:5])
    assert len(augmented) == 3 and all(a.shape == (5, 8, 8, 1) for a in augmented)
    assert not np.array_equal(augmented[0], augmented[1])
    png = augmentation_png(originals, augmented, "digits $x$")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    path = tmp_path / "augmentation.png"
    plot_augmentation(originals, augmented, path, "digits")
    assert path.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in tmp_path.iterdir()] == ["augmentation.png"]  # no temporary left
    with pytest.raises(ValueError, match=r"augmented_list\[1\] has shape"):
        augmentation_png(originals, [augmented[0], augmented[1][:4]])


# --------------------------------------------------------------------------- the config


def config(augment) -> object:
    return validate_config({"data": {"dataset": "digits", "augment": augment}}, "spec.yaml")


def test_config_accepts_and_defaults() -> None:
    assert validate_config({"data": {"dataset": "digits"}}, "s").data.augment is None
    section = config({"hflip": True, "shift": "3", "rotate": 10, "noise": 0.1, "erase": 0.5})
    assert section.data.augment.model_dump() == {
        "hflip": True,
        "shift": 3,
        "rotate": 10.0,
        "noise": 0.1,
        "erase": 0.5,
    }
    again = validate_config(section.to_dict(), "resolved.yaml")  # the resolved config validates
    assert again.data.augment == section.data.augment


@pytest.mark.parametrize(
    ("augment", "message"),
    [
        ({}, "data.augment: turn on at least one of hflip, shift, rotate, noise, erase"),
        ({"hflip": False, "noise": 0}, "data.augment: turn on at least one"),
        ({"hflp": True}, "data.augment.hflp: unknown key (did you mean 'hflip'?)"),
        ({"shift": True}, "data.augment.shift: expected a number, got the boolean true"),
        ({"rotate": True}, "data.augment.rotate: expected a number, got the boolean true"),
        ({"noise": False}, "data.augment.noise: expected a number, got the boolean false"),
        ({"erase": True}, "data.augment.erase: expected a number, got the boolean true"),
        ({"shift": -1}, "data.augment.shift: Input should be greater than or equal to 0"),
        ({"shift": 1.5}, "data.augment.shift: Input should be a valid integer"),
        ({"shift": 4}, "data.augment: shift 4 must be below half the image size"),
        ({"rotate": 181}, "data.augment.rotate: Input should be less than or equal to 180"),
        ({"rotate": -5}, "data.augment.rotate: Input should be greater than or equal to 0"),
        ({"noise": -0.1}, "data.augment.noise: Input should be greater than or equal to 0"),
        ({"noise": "inf"}, "data.augment.noise: Input should be a finite number"),
        ({"erase": 1.5}, "data.augment.erase: Input should be less than or equal to 1"),
        ({"hflip": "sometimes"}, "data.augment.hflip: Input should be a valid boolean"),
        ("yes", "data.augment: Input should be a valid dictionary"),
    ],
)
def test_config_errors_are_one_line(augment, message) -> None:
    with pytest.raises(ConfigError) as info:
        config(augment)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("spec.yaml: ")
    assert message in text


def test_config_image_size_per_dataset() -> None:
    spec = {"dataset": "fashion-mnist", "augment": {"shift": 13}}
    assert validate_config({"data": spec}, "s").data.augment.shift == 13
    with pytest.raises(ConfigError, match=r"at most 13\)$"):
        validate_config({"data": {**spec, "augment": {"shift": 14}}}, "s")
    with pytest.raises(ConfigError, match="blobs400 is not an image dataset"):
        validate_config({"data": {"dataset": "blobs400", "augment": {"hflip": True}}}, "s")


def test_module_imports_no_network_training_runs_report_or_cli() -> None:
    code = (
        "import sys, scratchnn_cli.data.augment; "
        "bad = [m for m in sys.modules if m.split('.')[:2] in "
        "[['scratchnn_cli', p] for p in ('nn', 'training', 'runs', 'report', 'cli', 'config')]]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- inside training


AUGMENTED_SPEC = {
    "seed": 1,
    "data": {"dataset": "digits", "augment": {"shift": 1, "noise": 0.05, "hflip": True}},
    "model": {
        "layers": [
            {"type": "conv2d", "filters": 4, "kernel": 3, "padding": "same"},
            "relu",
            {"type": "maxpool2d", "size": 2},
            "flatten",
        ],  # fmt: skip
        "init": "he",
    },
    "train": {
        "optimizer": "adam",
        "lr": 0.01,
        "batch_size": 64,
        "sampling": "shuffle",
        "eps": 0,
        "max_epochs": 4,
    },  # fmt: skip
}


def augmented_run(resume_from=None, restore_augment: bool = True):
    config = validate_config(AUGMENTED_SPEC, "spec.yaml")
    dataset = load_dataset(config.data, config.seed)
    streams = training_streams(config.seed)
    net = network_for_dataset(config, dataset, streams.init, streams.dropout)
    augment = spec_augmenter(config, dataset, streams.augment)
    if resume_from is not None and not restore_augment:
        resume_from = type(resume_from)(**{**vars(resume_from), "augment_rng": None})
    snaps: list = []
    X, y = training_set(config, dataset)
    seen_val: list = []
    real_forward = net.forward

    def forward(A, training=False):
        if not training:
            seen_val.append(A)
        return real_forward(A, training)

    net.forward = forward
    train(
        net, X, y, 10, config.train, streams.sampling, dataset.split("val"),
        Hooks(on_checkpoint=snaps.append, checkpoint_every=1), resume_from, augment=augment,
    )  # fmt: skip
    return net, snaps, dataset, seen_val


def test_resumed_augmented_run_equals_the_whole_run() -> None:
    whole, snaps, dataset, seen_val = augmented_run()
    at_2 = next(s for s in snaps if s.epochs == 2)
    # the snapshot holds the augmenter's generator as it was after two epochs, not as it started
    assert at_2.augment_rng != training_streams(AUGMENTED_SPEC["seed"]).augment.bit_generator.state
    resumed, *_ = augmented_run(resume_from=at_2)
    np.testing.assert_array_equal(resumed.theta, whole.theta)
    # without the augmenter's state the resumed run sees other batches: other weights
    other, *_ = augmented_run(resume_from=at_2, restore_augment=False)
    assert not np.array_equal(other.theta, whole.theta)
    # validation batches were the validation data itself, never augmented
    X_val = dataset.split("val")[0]
    assert seen_val and all(np.array_equal(A, X_val) for A in seen_val)
