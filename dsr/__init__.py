"""dsr: dynamical system reconstruction from neuroimaging data.

A latent piecewise-linear RNN observed through a hemodynamic (or calcium) convolution, trained by
generalized teacher forcing, many models at once as one batched ensemble.
"""

from dsr.errors import DsrError, DsrInputError, DsrTrainingError

__version__ = "0.1.0"

__all__ = ["DsrError", "DsrInputError", "DsrTrainingError", "__version__"]
