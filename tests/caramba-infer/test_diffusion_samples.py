"""The diffusion_samples scores, against loops written from their definitions."""

from __future__ import annotations

import math

import torch

from caramba_infer.diffusion import gaussian_fit, median_distance, mmd2_unbiased, nn_distances


def _mmd2_by_loops(x: torch.Tensor, y: torch.Tensor, sigma: float) -> float:
    def k(a: torch.Tensor, b: torch.Tensor) -> float:
        d2 = float(((a - b) ** 2).sum())
        return sum(math.exp(-d2 / (2 * (s * sigma) ** 2)) for s in (0.25, 0.5, 1.0)) / 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd2_matches_the_unbiased_estimator_written_as_loops() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, generator=g, dtype=torch.float64)
    y = torch.randn(5, 3, generator=g, dtype=torch.float64) + 0.5
    sigma = median_distance(x)
    assert math.isclose(mmd2_unbiased(x, y, sigma), _mmd2_by_loops(x, y, sigma), rel_tol=1e-9, abs_tol=1e-12)


def test_mmd2_separates_shifted_distributions_and_not_equal_ones() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, 2, generator=g, dtype=torch.float64)
    same = torch.randn(400, 2, generator=g, dtype=torch.float64)
    shifted = same + torch.tensor([1.0, 0.0], dtype=torch.float64)
    sigma = median_distance(x)
    assert abs(mmd2_unbiased(x, same, sigma)) < 0.005
    assert mmd2_unbiased(x, shifted, sigma) > 0.05


def test_nn_distances_match_brute_force() -> None:
    data = torch.tensor([[0.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    samples = torch.tensor([[0.0, 1.0], [3.0, 2.0], [10.0, 0.0]], dtype=torch.float64)
    to_samples, to_data = nn_distances(data, samples)
    assert math.isclose(to_samples, (1.0 + 2.0) / 2)
    assert math.isclose(to_data, (1.0 + 2.0 + 7.0) / 3)


def test_gaussian_fit_reproduces_the_training_mean_and_covariance() -> None:
    g = torch.Generator().manual_seed(2)
    train = torch.randn(5000, 2, generator=g, dtype=torch.float64) @ torch.tensor([[2.0, 0.0], [1.0, 0.5]],
                                                                                  dtype=torch.float64) + 3.0
    fit = gaussian_fit(train, 20000, torch.Generator().manual_seed(3))
    torch.testing.assert_close(fit.mean(0), train.mean(0), atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(fit.T), torch.cov(train.T), atol=0.08, rtol=0)
