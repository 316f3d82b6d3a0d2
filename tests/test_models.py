import numpy as np
import pytest
import torch

from dsr.errors import DsrInputError
from dsr.models import MODELS, make_model

E, B, M, L = 3, 4, 5, 7  # distinct sizes so a swapped axis cannot pass
PLRNNS = ["cshPLRNN", "shPLRNN"]  # the tests of their parameters; every MODELS entry elsewhere


def _model(name, seed=0, n_models=E):
    return make_model(
        name, n_models, M, L, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


@pytest.mark.parametrize("name", PLRNNS)
def test_parameter_shapes(name):
    m = _model(name)
    assert m.A.shape == (E, M) and m.W1.shape == (E, M, L) and m.W2.shape == (E, L, M)
    assert m.h1.shape == (E, M) and m.h2.shape == (E, L)
    assert torch.all(m.A.abs() < 1) and torch.all(m.h1 == 0)
    assert (m.h2 == 0).all() == (name == "shPLRNN")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_analytic_jacobian_matches_autograd(name):
    m = _model(name)
    z = torch.randn(E, B, M, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    jac = m.jacobian(z)
    auto = torch.autograd.functional.jacobian(m.step, z)  # (E, B, M, E, B, M)
    idx = torch.arange(E)[:, None], torch.arange(B)[None, :]
    expected = auto[idx[0], idx[1], :, idx[0], idx[1], :]
    torch.testing.assert_close(jac, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", PLRNNS)
def test_step_matches_equation(name):
    m = _model(name)
    z = torch.randn(E, B, M, dtype=torch.float64)
    e, b = 1, 2
    pre = m.W2[e] @ z[e, b]
    act = torch.relu(pre + m.h2[e]) - (torch.relu(pre) if name == "cshPLRNN" else 0)
    expected = m.A[e] * z[e, b] + m.W1[e] @ act + m.h1[e]
    torch.testing.assert_close(m.step(z)[e, b], expected)


def test_zero_w1_gives_linear_map():
    m = _model("cshPLRNN")
    with torch.no_grad():
        m.W1.zero_()
        m.h1.copy_(torch.randn(E, M, dtype=torch.float64))
    z1, z2 = torch.randn(2, E, B, M, dtype=torch.float64)
    a, b = 0.3, -1.7
    lhs = m.step(a * z1 + b * z2) - m.h1[:, None]
    rhs = a * (m.step(z1) - m.h1[:, None]) + b * (m.step(z2) - m.h1[:, None])
    torch.testing.assert_close(lhs, rhs)
    torch.testing.assert_close(m.jacobian(z1), torch.diag_embed(m.A)[:, None].expand(E, B, M, M))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_ensemble_equals_models_one_by_one(name):
    ensemble = _model(name)
    z0 = torch.randn(E, B, M, dtype=torch.float64)
    together = ensemble.generate(z0, 30)
    for e in range(E):
        single = _model(name, n_models=1)
        single.load_state_dict({k: v[e : e + 1] for k, v in ensemble.state_dict().items()})
        torch.testing.assert_close(single.generate(z0[e : e + 1], 30)[:, 0], together[:, e])


def test_generate_shape_and_start():
    m = _model("cshPLRNN")
    z0 = torch.randn(E, B, M, dtype=torch.float64)
    traj = m.generate(z0, 11)
    assert traj.shape == (11, E, B, M)
    torch.testing.assert_close(traj[0], z0)
    torch.testing.assert_close(traj[1], m.step(z0))


def test_initialisation_is_seeded():
    a, b, c = _model("cshPLRNN", 4), _model("cshPLRNN", 4), _model("cshPLRNN", 5)
    torch.testing.assert_close(a.W1, b.W1)
    assert not torch.equal(a.W1, c.W1)
    assert np.all(a.A.detach().numpy() > 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"name": "LSTM"},
            r"'model' must be one of \['S4D', 'cshPLRNN', 'selectiveSSM', 'shPLRNN'\]; got 'LSTM'",
        ),
        ({"latent_dim": 0}, "'latent_dim' must be a positive integer"),
        ({"hidden_dim": 2.5}, "'hidden_dim' must be a positive integer"),
    ],
)
def test_bad_model_arguments(kwargs, match):
    args = {"name": "cshPLRNN", "n_models": 2, "latent_dim": 3, "hidden_dim": 4, **kwargs}
    with pytest.raises(DsrInputError, match=match):
        make_model(**args)
