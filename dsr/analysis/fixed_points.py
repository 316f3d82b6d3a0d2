"""Exact fixed points and k-cycles of latent-map ensembles, where the map's form allows them.

PLRNNs (``map_kind`` "piecewise_linear") by region iteration (SCYFI idea): all models and candidate
orbits are solved as one batch, in float64: candidate points are ``(E, C, k, M)`` (C candidates of
period k per model), activation patterns ``(E, C, k, 2, L)``. Affine maps (the S4D SSM) by one
linear solve per period. Other maps (the selective SSM) are not searched (``search_method``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from dsr._validation import check_positive
from dsr.models.registry import analysis_copy

log = logging.getLogger(__name__)

SEARCH_METHODS = {"piecewise_linear": "region iteration", "affine": "linear solve"}
NOT_SEARCHED = "not searched"


def search_method(model) -> str:
    """How :func:`fixed_points_and_cycles` treats ``model``: "region iteration" (PLRNNs), "linear
    solve" (affine maps) or "not searched" (no exact solver for the map, e.g. the selective SSM)."""
    return SEARCH_METHODS.get(getattr(model, "map_kind", None), NOT_SEARCHED)


@dataclass
class Cycle:
    """A fixed point (period 1) or k-cycle of one model, with its linear stability.

    ``points`` (k, M) in orbit order starting at the point with the smallest first coordinate;
    ``eigenvalues`` (M,) of the k-step Jacobian product; ``stable`` when all ``|eig| < 1``;
    ``residual`` = ``max |F^k(z) - z|`` from re-simulating the map.
    """

    model: int
    period: int
    points: np.ndarray
    eigenvalues: np.ndarray
    stable: bool
    residual: float

    def to_dict(self) -> dict:
        """JSON-serialisable form (eigenvalues as [real, imag] pairs)."""
        eig = [[float(v.real), float(v.imag)] for v in self.eigenvalues]
        return {
            "model": self.model,
            "period": self.period,
            "points": self.points.tolist(),
            "eigenvalues": eig,
            "max_abs_eigenvalue": float(np.abs(self.eigenvalues).max()),
            "stable": self.stable,
            "residual": self.residual,
        }


def _regions(m, z: torch.Tensor) -> torch.Tensor:
    """Activation patterns of points ``z`` (E, C, k, M) -> (E, C, k, 2, L): [D1, D2]."""
    pre = torch.einsum("elm,ecjm->ecjl", m.W2, z)
    d2 = pre > 0 if m.clipped else torch.zeros_like(pre, dtype=torch.bool)
    return torch.stack([pre + m.h2[:, None, None] > 0, d2], dim=-2)


def _solve_regions(m, regions: torch.Tensor, period: int):
    """Solve ``z = F^k(z)`` assuming the map is linear in the given regions; points (E, C, k, M)."""
    d1, d2 = regions[..., 0, :].double(), regions[..., 1, :].double()
    jac = (
        torch.einsum("eml,ecjl,elk->ecjmk", m.W1, d1 - d2, m.W2)
        + torch.diag_embed(m.A)[:, None, None]
    )
    offset = torch.einsum("eml,ecjl->ecjm", m.W1, d1 * m.h2[:, None, None]) + m.h1[:, None, None]
    eye = torch.eye(m.latent_dim, dtype=jac.dtype).expand_as(jac[:, :, 0])
    prod, acc = eye, torch.zeros_like(offset[:, :, 0])
    for j in range(period):
        prod = jac[:, :, j] @ prod
        acc = (jac[:, :, j] @ acc[..., None])[..., 0] + offset[:, :, j]
    z, info = torch.linalg.solve_ex(eye - prod, acc)
    points = [z]
    for j in range(period - 1):
        points.append((jac[:, :, j] @ points[-1][..., None])[..., 0] + offset[:, :, j])
    return torch.stack(points, dim=2), prod, info == 0


def _initial_points(m, n_candidates: int, period: int, gen: torch.Generator) -> torch.Tensor:
    """Random candidate orbits (E, C, k, M): k consecutive states of short random trajectories."""
    z = torch.randn(m.n_models, n_candidates, m.latent_dim, generator=gen, dtype=torch.float64)
    traj = m.generate(z * 2.0, 32 + period)[-period:]  # (k, E, C, M)
    half = n_candidates // 2  # half from trajectories, half purely random states
    rand = torch.randn(
        period, m.n_models, n_candidates - half, m.latent_dim, generator=gen, dtype=torch.float64
    )
    pts = torch.cat([traj[:, :, :half], 2.0 * rand], dim=2)
    return torch.nan_to_num(pts.permute(1, 2, 0, 3), nan=0.0, posinf=0.0, neginf=0.0)


def _min_return(m, z: torch.Tensor, period: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual ``|F^k(z) - z|`` and the first j < k with ``F^j(z) ~ z`` (else k), z (E, C, M)."""
    first = torch.full(z.shape[:2], period)
    w = z
    for j in range(1, period + 1):
        w = m.step(w)
        close = (w - z).abs().amax(-1) < 1e-8 * (1 + z.abs().amax(-1))
        first = torch.where(close & (first == period) & (j < period), j, first)
    return (w - z).abs().amax(-1), first


@torch.no_grad()
def fixed_points_and_cycles(
    model,
    max_order: int = 2,
    n_initial_regions: int = 64,
    max_iter: int = 50,
    seed: int = 0,
    tol: float = 1e-8,
) -> list[Cycle]:
    """Exact fixed points and k-cycles (k <= max_order) of every model in an ensemble.

    PLRNNs (SCYFI idea): the map is linear inside each ReLU region (patterns
    ``D1 = 1[W2 z + h2 > 0]`` and, clipped, ``D2 = 1[W2 z > 0]``). For a candidate sequence of k
    regions the k-step linear system is solved; the solution is kept when every orbit point lies in
    its assumed region, otherwise the regions are replaced by those of the solution and the solve
    repeats (up to ``max_iter`` times). All models and ``n_initial_regions`` random candidates are
    solved as one batch, in float64. Accepted orbits are re-simulated (``|F^k(z) - z| < tol``),
    must have minimal period k, and are deduplicated (a cycle counts once whatever its start).

    Affine maps ``F(z) = J z + c`` (``map_kind`` "affine", the S4D SSM): ``z = F^k(z)`` is one
    linear solve per period, exact; with every |eigenvalue| < 1 only the fixed point exists. Any
    other map (:func:`search_method` "not searched", e.g. the selective SSM) is not searched: the
    result is empty and says nothing about its fixed points.

    Returns
    -------
    list of Cycle, ordered by model, then period.
    """
    check_positive("max_order", max_order, integer=True)
    check_positive("n_initial_regions", n_initial_regions, integer=True)
    check_positive("max_iter", max_iter, integer=True)
    method = search_method(model)
    if method == NOT_SEARCHED:
        log.info("fixed points not searched: %s has no exact solver", type(model).__name__)
        return []
    m = analysis_copy(model, torch.float64, "cpu")
    if method == SEARCH_METHODS["affine"]:
        return _affine_cycles(m, max_order, tol)
    gen = torch.Generator().manual_seed(seed)
    found = []
    for period in range(1, max_order + 1):
        regions = _regions(m, _initial_points(m, n_initial_regions, period, gen))
        done = torch.zeros(regions.shape[:2], dtype=torch.bool)
        for _ in range(max_iter):
            points, prod, ok = _solve_regions(m, regions, period)
            actual = _regions(m, torch.nan_to_num(points))
            consistent = (
                ok & torch.isfinite(points).all((-1, -2)) & (actual == regions).flatten(2).all(-1)
            )
            done |= consistent
            regions = torch.where(done[..., None, None, None], regions, actual)
            if done.all():
                break
        points, prod, ok = _solve_regions(m, regions, period)
        residual, first = _min_return(m, points[:, :, 0], period)
        keep = done & ok & (residual < tol * (1 + points.abs().amax((-1, -2)))) & (first == period)
        found.append(_deduplicate(points, prod, residual, keep, period))
    return sorted((c for group in found for c in group), key=lambda c: (c.model, c.period))


def _affine_cycles(m, max_order: int, tol: float) -> list[Cycle]:
    """Fixed points and k-cycles of an affine map ``F(z) = J z + c``: ``(I − J^k) z = F^k(0)``."""
    zero = torch.zeros(m.n_models, 1, m.latent_dim, dtype=torch.float64)
    jac = m.jacobian(zero)  # (E, 1, M, M), the same everywhere
    eye = torch.eye(m.latent_dim, dtype=torch.float64)
    found, prod, offset = [], eye.expand_as(jac), zero
    for period in range(1, max_order + 1):
        prod, offset = jac @ prod, m.step(offset)  # J^k, F^k(0)
        z, info = torch.linalg.solve_ex(eye - prod, offset)
        orbit = [z]
        for _ in range(period - 1):
            orbit.append(m.step(orbit[-1]))
        points = torch.stack(orbit, dim=2)  # (E, 1, k, M)
        residual, first = _min_return(m, z, period)
        ok = (info == 0) & torch.isfinite(points).all((-1, -2))
        keep = ok & (residual < tol * (1 + points.abs().amax((-1, -2)))) & (first == period)
        found.append(_deduplicate(points, prod, residual, keep, period))
    return sorted((c for group in found for c in group), key=lambda c: (c.model, c.period))


def _deduplicate(points, prod, residual, keep, period) -> list[Cycle]:
    """Rotate each orbit to a canonical start, drop repeats equal up to a cyclic shift."""
    weights = 1.0 / (1.0 + np.sqrt(2.0) * torch.arange(points.shape[-1], dtype=points.dtype))
    start = (torch.nan_to_num(points) @ weights).argmin(-1, keepdim=True)  # (E, C, 1)
    order = (start + torch.arange(period)) % period
    canon = torch.gather(points, 2, order[..., None].expand_as(points))  # (E, C, k, M)
    flat = torch.nan_to_num(canon, nan=1e300).flatten(2)
    dist = torch.stack(
        [
            torch.cdist(flat, torch.roll(canon, shift, dims=2).nan_to_num(nan=1e300).flatten(2))
            for shift in range(period)
        ]
    ).amin(0)
    scale = 1e-6 * (1 + flat.abs().amax(-1))
    n_cand = flat.shape[1]
    earlier = torch.ones(n_cand, n_cand, dtype=torch.bool).tril(-1)  # [i, j] = j < i
    duplicate = ((dist < scale[..., None]) & earlier & keep[:, None, :]).any(-1)
    keep = keep & ~torch.nan_to_num(duplicate).bool()
    eigs = torch.linalg.eigvals(torch.nan_to_num(prod))
    return [
        Cycle(
            int(e),
            period,
            canon[e, c].numpy(),
            eigs[e, c].numpy(),
            bool(eigs[e, c].abs().max() < 1),
            float(residual[e, c]),
        )
        for e, c in keep.nonzero().tolist()
    ]
