"""Shared fixtures: a tiny synthetic fMRIPrep cohort, written once per test session."""

import pytest

from dsr.synthetic import write_demo_cohort


@pytest.fixture(scope="session")
def demo_cohort(tmp_path_factory):
    """Two subjects, T=300 volumes, N=7 regions, 8^3 grid (fast; distinct T and N)."""
    root = tmp_path_factory.mktemp("demo")
    return write_demo_cohort(
        root,
        n_subjects=2,
        n_volumes=300,
        n_regions=7,
        grid=10,
        lyapunov_steps=2_000,
        seed=3,
        noise_sd=0.1,
        motion_strength=0.5,
    )
