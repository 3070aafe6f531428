"""Offline datasets: two moons (generated) and scikit-learn's handwritten digits (bundled).

scikit-learn is imported inside the builders, so importing `tavaal.data` stays cheap.
"""

from __future__ import annotations

import numpy as np

from tavaal.data.imbalance import imbalance_train, ratio_counts
from tavaal.data.registry import BuildContext, Splits, fixed_seed, register_dataset

# TA-VAAL §4.1: noise 0.2, 500 samples of one class and 50 of the other (imbalance x10).
MOONS_NOISE = 0.2
MOONS_COUNTS = (500, 50)
# Fraction of each digit class held out for the test split.
DIGITS_TEST_FRACTION = 0.3


def _moons(role: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_moons

    # A (n_class0, n_class1) tuple makes the class counts exact; the draw is shuffled.
    x, y = make_moons(
        n_samples=MOONS_COUNTS,
        noise=MOONS_NOISE,
        shuffle=True,
        random_state=fixed_seed(role) % (2**32),
    )
    return x.astype(np.float32), y.astype(np.int64)


@register_dataset("moons", n_train=550, n_test=550, input_shape=(2,))
def build_moons(ctx: BuildContext) -> Splits:
    """Two moons, 500 points of class 0 and 50 of class 1, noise 0.2 (TA-VAAL §4.1, Fig. 1).

    The test set is drawn the same way (500/50) from its own fixed seed. Float32 (N, 2).
    """
    x_train, y_train = _moons("moons/train")
    x_test, y_test = _moons("moons/test")
    return Splits(x_train, y_train, x_test, y_test, classes=("0", "1"))


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices; each class contributes round(test_fraction * n_c) to test."""
    train, test = [], []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        rng = np.random.default_rng([seed, int(cls)])
        members = members[rng.permutation(members.size)]
        n_test = int(np.floor(members.size * test_fraction + 0.5))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _digits() -> Splits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # The 8x8 images hold integers 0..16; (v * 255) // 16 maps them exactly onto 0..255 in
    # integer arithmetic (0 -> 0, 16 -> 255, rounding down), so they are stored as uint8 like
    # every other image dataset.
    values = bunch.images.astype(np.int64)
    images = ((values * 255) // 16).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    labels = bunch.target.astype(np.int64)
    train, test = stratified_split(labels, DIGITS_TEST_FRACTION, fixed_seed("digits/split"))
    return Splits(
        x_train=images[train],
        y_train=labels[train],
        x_test=images[test],
        y_test=labels[test],
        classes=tuple(str(c) for c in range(10)),
    )


# 1,797 images; the 30% test share of each class, rounded half up, sums to 539.
@register_dataset("digits", n_train=1258, n_test=539, input_shape=(1, 8, 8))
def build_digits(ctx: BuildContext) -> Splits:
    """scikit-learn's 8x8 handwritten digits, uint8 (N, 8, 8, 1), fixed stratified 70/30 split."""
    return _digits()


# Train classes 0-4 (125, 127, 124, 128, 127 images) keep 13, 13, 12, 13, 13.
@register_dataset("digits_imb10", n_train=691, n_test=539, input_shape=(1, 8, 8))
def build_digits_imb10(ctx: BuildContext) -> Splits:
    """`digits` with the train split of the first five classes (0-4) reduced to 1/10.

    Same construction as the modified CIFAR-10 of TA-VAAL §4.3; the test split stays balanced.
    """
    splits = _digits()
    counts = ratio_counts(splits.y_train, range(5), 0.1)
    return imbalance_train(splits, counts, fixed_seed("digits/imbalance"))
