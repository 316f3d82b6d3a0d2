"""Signal layer: observation kernels and deconvolution.

Kernels (``KERNELS``: SPM canonical HRF, calcium exponential, a kernel read from a file, identity) on
the sampling grid of the data, and the causal convolution with them; wavelet noise estimation and
denoising, Wiener deconvolution of a whole series, and its leak-free sliding form for held-out data.

Exports: ``KERNELS``, ``make_kernel``, ``spm_hrf``, ``calcium_kernel``, ``kernel_from_file``,
``identity_kernel``, ``subject_kernel``, ``causal_convolve``; ``wavelet_noise_sd``,
``wavelet_denoise``, ``wiener_deconvolve``, ``sliding_deconvolve``, ``edge_samples``.
"""

from dsr.signal.deconvolution import (
    edge_samples,
    sliding_deconvolve,
    wavelet_denoise,
    wavelet_noise_sd,
    wiener_deconvolve,
)
from dsr.signal.kernels import (
    KERNELS,
    calcium_kernel,
    causal_convolve,
    identity_kernel,
    kernel_from_file,
    make_kernel,
    spm_hrf,
    subject_kernel,
)

__all__ = [
    "KERNELS",
    "calcium_kernel",
    "causal_convolve",
    "edge_samples",
    "identity_kernel",
    "kernel_from_file",
    "make_kernel",
    "sliding_deconvolve",
    "spm_hrf",
    "subject_kernel",
    "wavelet_denoise",
    "wavelet_noise_sd",
    "wiener_deconvolve",
]
