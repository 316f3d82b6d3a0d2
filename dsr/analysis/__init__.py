"""Analysis layer: how good a fitted ensemble is, and what dynamics it learned.

Trajectory comparisons (state-space divergence D_stsp, power-spectrum Hellinger distance D_H),
n-step prediction error PE_n, Lyapunov spectra and the Kaplan-Yorke dimension, fixed points and
cycles, the evaluation protocol that scores every model of an ensemble, and model selection.

Exports: ``state_space_divergence``, ``power_spectrum_error``, ``prediction_error``,
``lyapunov_spectrum``, ``max_lyapunov_exponent``, ``kaplan_yorke_dimension``,
``fixed_points_and_cycles``, ``SubjectData``, ``Evaluation``, ``evaluate_ensemble``,
``evaluate_run``, ``free_runs``, ``select_models``, ``summarise``.
"""

from dsr.analysis.evaluation import (
    Evaluation,
    SubjectData,
    evaluate_ensemble,
    evaluate_run,
)
from dsr.analysis.fixed_points import fixed_points_and_cycles
from dsr.analysis.free_runs import free_runs
from dsr.analysis.lyapunov import kaplan_yorke_dimension, lyapunov_spectrum, max_lyapunov_exponent
from dsr.analysis.metrics import power_spectrum_error, state_space_divergence
from dsr.analysis.prediction import prediction_error
from dsr.analysis.selection import select_models, summarise

__all__ = [
    "Evaluation",
    "SubjectData",
    "evaluate_ensemble",
    "evaluate_run",
    "fixed_points_and_cycles",
    "free_runs",
    "kaplan_yorke_dimension",
    "lyapunov_spectrum",
    "max_lyapunov_exponent",
    "power_spectrum_error",
    "prediction_error",
    "select_models",
    "state_space_divergence",
    "summarise",
]
