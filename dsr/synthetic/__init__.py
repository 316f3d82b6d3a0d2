"""Synthetic data with known answers: the Lorenz-63 system and the demo cohorts.

``lorenz`` integrates Lorenz-63 and knows its largest Lyapunov exponent; ``fmriprep_demo`` writes
a cohort of Lorenz subjects through the HRF in fMRIPrep layout (NIfTI, sidecars, confounds, atlas);
``calcium_demo`` writes one through the calcium kernel in suite2p layout.

Exports: ``simulate_lorenz``, ``lorenz63``, ``lorenz63_jacobian``, ``lyapunov_max_lorenz``,
``observe_lorenz``, ``write_demo_cohort``, ``write_calcium_demo``.
"""

from dsr.synthetic.calcium_demo import write_calcium_demo
from dsr.synthetic.fmriprep_demo import write_demo_cohort
from dsr.synthetic.lorenz import (
    lorenz63,
    lorenz63_jacobian,
    lyapunov_max_lorenz,
    observe_lorenz,
    simulate_lorenz,
)

__all__ = [
    "lorenz63",
    "lorenz63_jacobian",
    "lyapunov_max_lorenz",
    "observe_lorenz",
    "simulate_lorenz",
    "write_calcium_demo",
    "write_demo_cohort",
]
