"""Exact fixed points and k-cycles of PLRNN ensembles (hand-built known answer, random models)."""

import numpy as np
import pytest
import torch

from dsr.analysis.fixed_points import fixed_points_and_cycles
from dsr.errors import DsrInputError
from dsr.models import make_model


def test_fixed_points_errors():
    with pytest.raises(DsrInputError, match="max_order"):
        fixed_points_and_cycles(make_model("cshPLRNN", 1, 2, 2), max_order=0)


def _hand_built():
    """z1 <- 0.5 z1 + 1; z2 <- 0.25 z2 + 1 (z2 <= 0), -2 z2 + 1 (z2 > 0).

    Fixed point (2, 1/3), eigenvalues (0.5, -2): unstable. 2-cycle (2, -2/3) <-> (2, 5/6), two-step
    eigenvalues (0.25, -0.5): stable.
    """
    model = make_model("shPLRNN", 2, 2, 1, dtype=torch.float64)
    with torch.no_grad():
        model.A.copy_(torch.tensor([0.5, 0.25]).expand(2, 2))
        model.W1.zero_()
        model.W1[:, 1, 0] = -2.25
        model.W2.zero_()
        model.W2[:, 0, 1] = 1.0
        model.h1.fill_(1.0)
        model.h2.zero_()
    return model


def test_hand_built_fixed_point_and_two_cycle_found_exactly():
    cycles = fixed_points_and_cycles(_hand_built(), max_order=3, n_initial_regions=16)
    assert [(c.model, c.period) for c in cycles] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    fp, cyc = cycles[0], cycles[1]
    np.testing.assert_allclose(fp.points, [[2.0, 1 / 3]], atol=1e-12)
    np.testing.assert_allclose(sorted(fp.eigenvalues.real), [-2.0, 0.5], atol=1e-12)
    assert not fp.stable
    np.testing.assert_allclose(sorted(cyc.points[:, 1]), [-2 / 3, 5 / 6], atol=1e-12)
    np.testing.assert_allclose(sorted(cyc.eigenvalues.real), [-0.5, 0.25], atol=1e-12)
    assert cyc.stable and cyc.to_dict()["max_abs_eigenvalue"] == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["cshPLRNN", "shPLRNN"])
def test_every_reported_orbit_is_exact_and_unique(name):
    g = torch.Generator().manual_seed(2)
    model = make_model(name, 6, 3, 12, generator=g, dtype=torch.float64)
    with torch.no_grad():
        model.W1.mul_(3.0)
    cycles = fixed_points_and_cycles(model, max_order=3, n_initial_regions=32)
    assert cycles
    keys = set()
    for c in cycles:
        z = torch.as_tensor(c.points[0]).expand(6, 1, 3).contiguous()
        orbit = model.generate(z, c.period + 1)[:, c.model, 0].detach().numpy()
        np.testing.assert_allclose(orbit[:-1], c.points, atol=1e-8)  # orbit order
        assert np.abs(orbit[-1] - orbit[0]).max() < 1e-8  # F^k(z) = z
        assert all(np.abs(orbit[j] - orbit[0]).max() > 1e-8 for j in range(1, c.period))
        key = (c.model, c.period, tuple(np.round(np.sort(c.points, axis=0).ravel(), 6)))
        assert key not in keys
        keys.add(key)
