"""Shared fixtures: one torch thread; a tiny synthetic fMRIPrep cohort, written once per session."""

import pytest
import torch

from dsr.synthetic.fmriprep_demo import write_demo_cohort


@pytest.fixture(autouse=True)
def _one_thread():
    """dsr runs single-threaded by default (CLI, workflow): tiny batched ops only lose from
    intra-op threads (10x slower on busy 2-core CPUs)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
