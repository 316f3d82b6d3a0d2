import numpy as np
import pytest
import torch

from dsr.errors import DsrInputError
from dsr.models.decoders import DECODERS, causal_valid_convolution, make_decoder
from dsr.signal.kernels import spm_hrf

E, B, N, M, P, T = 2, 3, 4, 6, 2, 50


def _decoder(name, kernel=None):
    kernel = spm_hrf(2.0) if kernel is None else kernel
    return make_decoder(
        name, E, N, M, kernel, P, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )


def test_causal_valid_convolution_matches_numpy():
    kernel = spm_hrf(2.0)
    z = torch.randn(T, E, B, M, dtype=torch.float64)
    y = causal_valid_convolution(z, torch.as_tensor(kernel))
    h = len(kernel)
    assert y.shape == (T - h + 1, E, B, M)
    ref = np.convolve(z[:, 1, 2, 3].numpy(), kernel)[h - 1 : T]
    np.testing.assert_allclose(y[:, 1, 2, 3].numpy(), ref, atol=1e-12)


def test_convolved_decoder_equation():
    dec = _decoder("convolved")
    z = torch.randn(T, E, B, M, dtype=torch.float64)
    r = torch.randn(T, E, B, P, dtype=torch.float64)
    x = dec.decode(z, r)
    h = dec.kernel_length
    e, b, t = 1, 0, 10  # output index t is time t + h - 1
    conv = sum(dec.kernel[s] * z[t + h - 1 - s, e, b] for s in range(h))
    expected = dec.B[e] @ conv + dec.J[e] @ r[t + h - 1, e, b]
    torch.testing.assert_close(x[t, e, b], expected)


def test_standard_decoder_is_instantaneous():
    dec = _decoder("standard")
    z = torch.randn(T, E, B, M, dtype=torch.float64)
    x = dec.decode(z)
    assert dec.kernel_length == 1 and x.shape == (T, E, B, N)
    torch.testing.assert_close(x[5, 1, 2], dec.B[1] @ z[5, 1, 2])


def test_forcing_inverts_decoder_and_keeps_nan():
    dec = _decoder("convolved")
    z = torch.randn(T, E, B, M, dtype=torch.float64)
    r = torch.randn(T, E, B, P, dtype=torch.float64)
    x = torch.einsum("tebm,enm->tebn", z, dec.B) + torch.einsum("tebp,enp->tebn", r, dec.J)
    x[3] = float("nan")
    d = dec.forcing(x, r)
    assert d.shape == (T, E, B, M) and torch.isnan(d[3]).all()
    # B B+ x = x for x in the range of B (N < M: B has full row rank)
    back = torch.einsum("tebm,enm->tebn", d, dec.B) + torch.einsum("tebp,enp->tebn", r, dec.J)
    torch.testing.assert_close(back[4:], x[4:])
    assert not d.requires_grad


def test_identity_decoder_reads_first_latents():
    dec = _decoder("identity", kernel=[1.0])
    z = torch.randn(T, E, B, M, dtype=torch.float64)
    torch.testing.assert_close(dec.decode(z), z[..., :N])
    x0 = torch.randn(E, B, N, dtype=torch.float64)
    z0 = dec.initial_state(x0)
    assert z0.shape == (E, B, M) and dec.forced_dims == N
    torch.testing.assert_close(z0[..., :N], x0)
    torch.testing.assert_close(z0[..., N:], torch.einsum("ekn,ebn->ebk", dec.L, x0))


def test_identity_decoder_needs_enough_latents():
    with pytest.raises(ValueError, match="latent_dim >= obs_dim"):
        make_decoder("identity", 1, 5, 3, [1.0])


def test_unknown_decoder():
    with pytest.raises(DsrInputError, match=r"'decoder' must be one of \["):
        make_decoder("poisson", 1, 2, 2, [1.0])
    assert set(DECODERS) == {"convolved", "standard", "identity"}
