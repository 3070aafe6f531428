"""The geometry of the two-moons generating process (TA-VAAL §4.1, Fig. 1) and of grids over
its plane: the noiseless moons, P(class 1 | x) under the generating process (its 0.5 level is
the Bayes decision boundary), and the points where a function on a grid crosses a level.
Used by the adversary replay (`tavaal.adversary_replay`) and the selection statistics
(`tavaal.report.selection_geometry`).
"""

from __future__ import annotations

import numpy as np

from tavaal.data.synthetic import MOONS_COUNTS, MOONS_NOISE


def moon_arcs(counts: tuple[int, int] = MOONS_COUNTS) -> tuple[np.ndarray, np.ndarray]:
    """The noiseless points of scikit-learn's make_moons: `counts[0]` evenly spaced on the upper
    moon (class 0, our majority) and `counts[1]` on the lower moon (class 1, our minority);
    make_moons adds Gaussian noise of std `noise` to exactly these points."""
    upper_t = np.linspace(0.0, np.pi, counts[0])
    lower_t = np.linspace(0.0, np.pi, counts[1])
    upper = np.c_[np.cos(upper_t), np.sin(upper_t)]
    lower = np.c_[1.0 - np.cos(lower_t), 0.5 - np.sin(lower_t)]
    return upper, lower


def bayes_class1_probability(
    points: np.ndarray,
    noise: float = MOONS_NOISE,
    counts: tuple[int, int] = MOONS_COUNTS,
    chunk: int = 4096,
) -> np.ndarray:
    """P(class 1 | x) under the process that generated the moons: an equal-weight mixture of
    isotropic Gaussians (std `noise`) on the noiseless points of `moon_arcs`. Its 0.5 level is
    the Bayes decision boundary ("oracle boundary" of TA-VAAL Fig. 1), which the x10 imbalance
    pushes towards the minority moon."""
    upper, lower = moon_arcs(counts)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)

    def log_mass(part: np.ndarray, centres: np.ndarray) -> np.ndarray:
        squared = ((part[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
        exponent = -squared / (2.0 * noise**2)
        top = exponent.max(axis=1, keepdims=True)
        return (top + np.log(np.exp(exponent - top).sum(axis=1, keepdims=True)))[:, 0]

    out = np.empty(len(points))
    for start in range(0, len(points), chunk):
        part = points[start : start + chunk]
        out[start : start + chunk] = 1.0 / (
            1.0 + np.exp(log_mass(part, upper) - log_mass(part, lower))
        )
    return out


def plane_grid(
    x: np.ndarray, resolution: int = 120, margin: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid_x, grid_y, points (R*R, 2) float32) covering 2-D points `x` plus `margin`."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"a plane grid needs 2-D points, got shape {x.shape}")
    lo, hi = x.min(axis=0) - margin, x.max(axis=0) + margin
    gx, gy = np.meshgrid(
        np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution)
    )
    return gx, gy, np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)


def level_set_points(
    grid_x: np.ndarray, grid_y: np.ndarray, values: np.ndarray, level: float = 0.5
) -> np.ndarray:
    """(M, 2) points where `values` on the grid crosses `level`: the midpoints of the grid
    edges whose ends lie on either side (the level set at the grid's resolution)."""
    above = np.asarray(values) > level
    across = above[:, 1:] != above[:, :-1]  # along x
    down = above[1:, :] != above[:-1, :]  # along y
    horizontal = np.c_[(grid_x[:, 1:] + grid_x[:, :-1])[across] / 2, grid_y[:, 1:][across]]
    vertical = np.c_[grid_x[1:, :][down], (grid_y[1:, :] + grid_y[:-1, :])[down] / 2]
    return np.r_[horizontal, vertical]


def bayes_boundary(x_train: np.ndarray, resolution: int = 300) -> np.ndarray:
    """Points of the Bayes decision boundary over the plane around `x_train`."""
    gx, gy, points = plane_grid(x_train, resolution)
    return level_set_points(gx, gy, bayes_class1_probability(points).reshape(gx.shape))
