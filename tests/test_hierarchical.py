"""The hierarchical cohort model: materialised parameters, gradients, training, transfer, the
feature space, and the workflow with ``fit.hierarchical.enabled``."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from dsr.analysis.evaluation import evaluate_ensemble
from dsr.errors import DsrInputError
from dsr.models.latent import LatentMap
from dsr.models.plrnn import ClippedShallowPLRNN
from dsr.models.registry import make_hierarchical
from dsr.report.feature_space import (
    FeatureSpace,
    loo_predictions,
    loo_r2,
    parameter_matrix,
    per_restart,
    restarts_loo_r2,
    restarts_predict,
    select_restarts,
)
from dsr.signal.kernels import spm_hrf
from dsr.synthetic.lorenz import simulate_lorenz
from dsr.training.ensemble import load_ensemble, save_ensemble
from dsr.training.hierarchical import (
    HierarchicalConfig,
    fit_hierarchical,
    load_hierarchical,
    save_hierarchical,
    transfer_subjects,
)
from dsr.training.hierarchical_state import HierarchicalState, batch_view
from dsr.training.loop import TrainingConfig

KERNEL = spm_hrf(1.4)  # 23 samples
TINY = TrainingConfig(
    epochs=3, batches_per_epoch=2, batch_size=3, seq_len=40, hidden_dim=6, checkpoint_every=1
)
HC = HierarchicalConfig(n_features=2, subjects_per_batch=2)


def _model(R=2, S=3, P=3, M=4, L=5, base="cshPLRNN", scale=1.0):
    model = make_hierarchical(
        base, R, S, P, M, L, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    with torch.no_grad():  # away from the near-zero initialisation, so every unit is exercised
        model.features.normal_(generator=torch.Generator().manual_seed(2))
        for p in model.group_parameters():
            p.mul_(scale)
    return model


@pytest.fixture(scope="module")
def cohort():
    """Three subjects: Lorenz at different ρ, mixed into N = 3 regions, through the HRF."""
    out = []
    for i, rho in enumerate((28.0, 35.0, 45.0)):
        z = simulate_lorenz(220 + len(KERNEL), 0.05, rho, seed=i)
        x = np.convolve(z[:, 0], KERNEL)[: len(z)][:, None] * np.array([1.0, -0.5, 0.3])
        x = x[len(KERNEL) :] + 0.1 * z[len(KERNEL) :, 1:2]
        out.append((x - x.mean(0)) / x.std(0))
    return out


def test_initialisation_follows_the_reference():
    model = make_hierarchical("cshPLRNN", 3, 4, 2, 5, 7, generator=torch.Generator().manual_seed(0))
    f = model.features.detach()
    assert torch.equal(f, f[:, :1].expand_as(f))  # one vector per restart, copied to subjects
    assert f.abs().max() <= 1 and not torch.equal(f[0], f[1])
    bound = 0.1 * np.sqrt(6 / (5 * 7 + 2 * 7))  # P_W1 (P, M, L): fan_in M·L, fan_out P·L
    assert model.P_W1.abs().max() <= bound and model.P_W1.abs().max() > 0.8 * bound


@pytest.mark.parametrize("base", ["cshPLRNN", "shPLRNN"])
def test_materialised_parameters_are_features_times_group_tensors(base):
    model = _model(base=base)
    subjects = torch.tensor([2, 0])
    got = model.materialise(subjects)
    for i, s in enumerate(subjects.tolist()):
        for r in range(model.n_restarts):
            p = model.features[r, s]
            e = i * model.n_restarts + r  # subject-major
            torch.testing.assert_close(got["A"][e], p @ model.P_A[r])
            torch.testing.assert_close(got["W1"][e], torch.einsum("p,pml->ml", p, model.P_W1[r]))
            torch.testing.assert_close(got["W2"][e], torch.einsum("p,plm->lm", p, model.P_W2[r]))
            torch.testing.assert_close(got["h1"][e], p @ model.P_h1[r])
            torch.testing.assert_close(got["h2"][e], p @ model.P_h2[r])
    ens = model.to_ensemble()
    assert (
        type(ens).__name__ == {"cshPLRNN": "ClippedShallowPLRNN", "shPLRNN": "ShallowPLRNN"}[base]
    )
    z = torch.randn(ens.n_models, 5, model.latent_dim, dtype=torch.float64)
    torch.testing.assert_close(ens.jacobian(z), model.jacobian(z))
    torch.testing.assert_close(ens.step(z), model.step(z))


def _rollout_inputs(E, M, T=7, B=2):
    g = torch.Generator().manual_seed(5)
    z0 = torch.randn(E, B, M, generator=g, dtype=torch.float64)
    keep = torch.rand(T, E, B, M, generator=g, dtype=torch.float64)
    target = torch.randn(T, E, B, M, generator=g, dtype=torch.float64)
    return z0, keep, target


@pytest.mark.parametrize("base", ["cshPLRNN", "shPLRNN"])
def test_gradients_reach_group_tensors_and_features(base):
    """The fused rollout through the materialised view gives the gradients of autograd through
    the generic step loop (float64)."""
    model = _model(base=base, scale=5.0)
    subjects = torch.tensor([1, 2])
    z0, keep, target = _rollout_inputs(2 * model.n_restarts, model.latent_dim)
    grads = []
    for rollout in (
        lambda v: v.forced_rollout,
        lambda v: lambda *a: LatentMap.forced_rollout(v, *a),
    ):
        model.zero_grad()
        out = rollout(model.view(subjects))(z0, keep, target)
        (out.square().sum() + out.sum()).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for fused, reference in zip(*grads, strict=True):
        torch.testing.assert_close(fused, reference, rtol=1e-9, atol=1e-9)
    assert all(g.abs().sum() > 0 for g in grads[0])
    assert grads[0][-1][:, 0].abs().sum() == 0  # subject 0 was not in the batch


def test_gradcheck_of_the_fused_rollout_through_features():
    """gradcheck of features and P_W1 -> materialised view -> fused rollout (float64)."""
    model = _model(R=1, S=2, P=2, M=3, L=4, scale=5.0)
    z0, keep, target = _rollout_inputs(2, 3, T=4)

    def rollout(features, p_w1):
        with torch.no_grad():
            model.features.copy_(features)
            model.P_W1.copy_(p_w1)
        view = model.view()
        view.A = torch.einsum("rsp,rpm->srm", features, model.P_A).reshape(2, -1)
        view.W1 = torch.einsum("rsp,rpml->srml", features, p_w1).reshape(2, 3, 4)
        view.W2 = torch.einsum("rsp,rplm->srlm", features, model.P_W2).reshape(2, 4, 3)
        view.h1 = torch.einsum("rsp,rpm->srm", features, model.P_h1).reshape(2, -1)
        view.h2 = torch.einsum("rsp,rpl->srl", features, model.P_h2).reshape(2, -1)
        torch.testing.assert_close(view.W1, model.view().W1)  # the view's own materialisation
        return view.forced_rollout(z0, keep, target)

    inputs = (model.features.detach().clone(), model.P_W1.detach().clone())
    assert torch.autograd.gradcheck(rollout, tuple(t.requires_grad_() for t in inputs))


def test_batch_view_of_a_decoder_passes_gradients_to_the_full_parameters():
    from dsr.models.decoders import make_decoder

    dec = make_decoder("convolved", 4, 3, 3, KERNEL, 2, dtype=torch.float64)
    view = batch_view(dec, torch.tensor([1, 3]))
    assert view.B.shape == (2, 3, 3) and view.kernel is dec.kernel
    z = torch.randn(30, 2, 1, 3, dtype=torch.float64)
    view.decode(z, torch.zeros(30, 2, 1, 2, dtype=torch.float64)).sum().backward()
    assert dec.B.grad[[0, 2]].abs().sum() == 0 and dec.B.grad[[1, 3]].abs().sum() > 0
    assert dec.B.shape[0] == 4  # the original is untouched


def test_fit_evaluates_per_subject_and_transfers(cohort, tmp_path):
    fit = fit_hierarchical(
        cohort, KERNEL, n_restarts=2, config=TINY, hierarchical=HC, seed=0, device="cpu"
    )
    ens = fit.ensemble
    assert ens.n_models == 6 and fit.features.shape == (2, 3, 2)
    assert list(ens.model_subject) == [0, 0, 1, 1, 2, 2] and list(ens.model_restart) == [0, 1] * 3
    assert ens.status == ["ok"] * 6 and np.isfinite(ens.loss_history).all()
    assert ens.config["hierarchical"]["n_features"] == 2
    assert not np.allclose(fit.features[:, 0], fit.features[:, 1])  # subjects moved apart
    ev = evaluate_ensemble(
        ens,
        dict(zip(ens.subject_ids, cohort, strict=True)),
        n_trajectories=2,
        lyap_steps=50,
        lyap_transient=10,
        tr_s=1.4,
    )
    assert len(ev.table) == 6 and np.isfinite(ev.table["lambda_max"]).all()
    part = ens.for_subject("sub-02")
    save_ensemble(part, tmp_path / "model.pt")
    loaded = load_ensemble(tmp_path / "model.pt")
    torch.testing.assert_close(
        loaded.model.W1, fit.model.materialise(torch.tensor([1]))["W1"].float()
    )
    save_hierarchical(fit, tmp_path)
    again, info = load_hierarchical(tmp_path / "hierarchical.pt")
    assert info["subject_ids"] == ens.subject_ids
    np.testing.assert_allclose(np.load(tmp_path / "features.npy"), fit.features)
    before = [p.detach().clone() for p in fit.model.group_parameters()]
    new = transfer_subjects(fit, cohort[:1], KERNEL, config=TINY, seed=4, device="cpu")
    assert new.ensemble.n_models == 2 and new.features.shape == (2, 1, 2)
    for a, b, c in zip(
        before, fit.model.group_parameters(), new.model.group_parameters(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the cohort model is untouched
        torch.testing.assert_close(a, c, rtol=0, atol=0)  # and the transfer kept them fixed
    mean = fit.features.mean(1)
    assert not np.allclose(new.features[:, 0], mean)  # the new subject's features trained


def test_resume_gives_the_uninterrupted_fit(cohort, tmp_path, monkeypatch):
    config = dataclasses.replace(TINY, epochs=4)
    full = fit_hierarchical(cohort, KERNEL, n_restarts=2, config=config, hierarchical=HC, seed=3)
    original = HierarchicalState.save

    class Killed(Exception):
        pass

    def save_then_die(self, directory, fingerprint):
        original(self, directory, fingerprint)
        if self.epoch >= 2:
            raise Killed

    monkeypatch.setattr(HierarchicalState, "save", save_then_die)
    with pytest.raises(Killed):
        fit_hierarchical(
            cohort,
            KERNEL,
            n_restarts=2,
            config=config,
            hierarchical=HC,
            seed=3,
            checkpoint_dir=tmp_path,
        )
    monkeypatch.setattr(HierarchicalState, "save", original)
    resumed = fit_hierarchical(
        cohort,
        KERNEL,
        n_restarts=2,
        config=config,
        hierarchical=HC,
        seed=3,
        checkpoint_dir=tmp_path,
    )
    np.testing.assert_array_equal(full.features, resumed.features)
    np.testing.assert_array_equal(full.ensemble.loss_history, resumed.ensemble.loss_history)


def test_a_diverged_restart_is_restored_and_the_others_train_on(cohort):
    model = make_hierarchical("cshPLRNN", 2, 3, 2, 3, 6, generator=torch.Generator().manual_seed(0))
    from dsr.models.decoders import make_decoder

    decoder = make_decoder("convolved", 6, 3, 3, KERNEL)
    state = HierarchicalState.new(model, decoder, TINY, 1.0, True, 0, "cpu")
    with torch.no_grad():
        model.P_W1[1, 0, 0, 0] = float("nan")
    loss = torch.tensor([1.0, 2.0, 1.0, 2.0, 1.0, 2.0], dtype=torch.float64)
    state._flag_and_restore(loss, torch.ones(6, dtype=torch.bool))
    assert state.failed.tolist() == [False, True]
    assert torch.isfinite(model.P_W1).all()


def test_feature_space_is_invariant_to_the_feature_basis():
    model = _model(R=3, S=6, P=2, M=3, L=4)
    params = per_restart(parameter_matrix(model.to_ensemble()), 3)
    space = FeatureSpace.fit(params, 2)
    with torch.no_grad():  # p -> p T, group tensors -> T⁻¹ P: the same model
        T = torch.tensor([[2.0, 1.0], [0.5, -1.0]], dtype=torch.float64)
        model.features.copy_(model.features @ T)
        for p in model.group_parameters():
            p.copy_(torch.einsum("qp,rp...->rq...", torch.linalg.inv(T), p))
    moved = per_restart(parameter_matrix(model.to_ensemble()), 3)
    np.testing.assert_allclose(moved, params, atol=1e-10)
    np.testing.assert_allclose(FeatureSpace.fit(moved, 2).coords, space.coords, atol=1e-8)
    np.testing.assert_allclose(space.transform(params), space.coords, atol=1e-8)
    np.testing.assert_allclose(space.transform_per_restart(params), space.per_restart, atol=1e-8)
    x = np.random.default_rng(0).normal(size=(12, 2))
    assert loo_r2(x, 3 * x[:, 0] - x[:, 1] + 2) > 0.999


def test_restarts_mean_readout_ignores_each_restarts_feature_basis():
    """Each restart's features are an arbitrary invertible linear image of the same positions;
    its own OLS readout (and so the restarts' mean) is unchanged by that image."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 2))
    y = 3 * x[:, 0] - x[:, 1] + 2 + 0.1 * rng.normal(size=12)
    maps = [np.eye(2), np.array([[2.0, 1.0], [0.5, -1.0]]), np.array([[0.0, 3.0], [-1.0, 0.2]])]
    per = np.stack([x @ m + r for r, m in enumerate(maps)])  # (R, S, k), shifted and mixed
    same = np.stack([x] * 3)
    assert restarts_loo_r2(per, y, [0, 1, 2]) == pytest.approx(restarts_loo_r2(same, y, [0]))
    assert restarts_loo_r2(per, y, [0, 1, 2]) > 0.95
    new = rng.normal(size=(1, 2))
    new_per = np.stack([new @ m + r for r, m in enumerate(maps)])
    coef = np.linalg.lstsq(np.c_[x, np.ones(12)], y, rcond=None)[0]
    np.testing.assert_allclose(restarts_predict(per, y, [1, 2], new_per), np.r_[new[0], 1] @ coef)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_features": 0}, "n_features"),
        ({"subjects_per_batch": 0}, "subjects_per_batch"),
        ({"subject_lr_factor": -1.0}, "subject_lr_factor"),
    ],
)
def test_bad_hierarchical_config_is_refused(kwargs, match):
    with pytest.raises(DsrInputError, match=match):
        HierarchicalConfig(**kwargs)


def test_only_plrnn_maps_have_a_hierarchical_form():
    with pytest.raises(DsrInputError, match="S4D"):
        make_hierarchical("S4D", 1, 2, 2, 3, 4)
    assert isinstance(
        make_hierarchical("cshPLRNN", 1, 2, 2, 3, 4).to_ensemble(), ClippedShallowPLRNN
    )


# --------------------------------------------------------------------------- workflow
REPO = Path(__file__).resolve().parents[1]
WORKFLOW = {
    "demo": {"n_subjects": 2, "n_volumes": 200, "n_regions": 4},
    "fit": {
        "n_restarts": 2,
        "epochs": 3,
        "batches_per_epoch": 2,
        "batch_size": 4,
        "seq_len": 40,
        "hidden_dim": 8,
        "checkpoint_every": 0,
        "hierarchical": {"enabled": True, "n_features": 2},
    },
    "evaluate": {"n_trajectories": 2, "lyap_steps": 100, "lyap_transient": 20, "max_order": 1},
    "report": {"n_show": 1},
}


@pytest.mark.workflow
def test_workflow_with_a_hierarchical_fit(tmp_path):
    cfg = tmp_path / "test-config.yaml"
    cfg.write_text(yaml.safe_dump(WORKFLOW))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(cfg),
        "--cores",
        "2",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = tmp_path / "results"
    assert np.load(res / "cohort_fit/features.npy").shape == (2, 2, 2)
    for s in ("sub-01", "sub-02"):
        assert (res / s / "fit" / "model.pt").is_file() and (res / s / "report.html").is_file()
    table = pd.read_csv(res / "cohort/features.tsv", sep="\t")
    assert set(table["restart"].astype(str)) == {"0", "1", "consensus"}
    assert set(table["subject"]) == {"sub-01", "sub-02"}
    html = (res / "cohort/report.html").read_text()
    assert "feature space" in html.lower()
    assert "rho" in html  # the demo's planted ρ is related to the features


def test_covariates_from_a_subject_sheet_are_related_to_the_features(tmp_path):
    from dsr.report.features import covariate_table, relate

    sheet = tmp_path / "subjects.tsv"
    sheet.write_text("subject\tage\tgroup\ns1\t30\tA\ns2\t40\tB\ns3\t50\tA\ns4\t60\tB\ns5\t70\tA\n")
    table = covariate_table(["s1", "s2", "s3", "s4", "s5"], sheet=sheet)
    assert list(table.columns) == ["age"]  # numeric columns only
    coords = np.c_[np.arange(5.0), np.array([0.3, -0.1, 0.2, 0.0, -0.2])]
    noisy = coords + np.array([[0.0, 0.0], [0.3, 0.0], [0.0, 0.0], [-0.3, 0.0], [0.0, 0.0]])
    space = FeatureSpace(
        mean=None, basis=None, rotation=None, restarts=np.array([0, 1]), coords=coords,
        per_restart=np.stack([coords, noisy, noisy]), spread=None,
    )  # fmt: skip
    rel = relate(space, table)
    assert rel.loc[0, "covariate"] == "age" and rel.loc[0, "loo_r2_consensus"] > 0.99
    assert rel.loc[0, "spearman_c1"] == pytest.approx(1.0)
    # the restarts' mean readout: restart 0 exact, restart 1 off; restart 2 is not in the consensus
    both = np.mean([loo_predictions(c[:, :2], np.arange(30.0, 80, 10)) for c in (coords, noisy)], 0)
    r2 = 1 - ((both - np.arange(30.0, 80, 10)) ** 2).sum() / 1000.0
    assert rel.loc[0, "loo_r2"] == pytest.approx(r2) and r2 < 0.99


def test_consensus_restarts_are_the_eligible_ones_not_only_the_selected():
    rows = [
        {"subject": s, "restart": r, "status": "ok", "eligible": r < 3, "selected": r == 0,
         "dstsp_test": 0.1 * (r + 1)}
        for s in ("sub-01", "sub-02") for r in range(4)
    ]  # fmt: skip
    assert select_restarts(pd.DataFrame(rows)).tolist() == [0, 1, 2]
