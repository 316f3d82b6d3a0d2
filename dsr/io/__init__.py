"""Data inputs: files (fMRIPrep, suite2p, NWB, plain arrays) -> ``(T, N)`` series + metadata."""

from dsr.io.arrays import extract_array, load_array
from dsr.io.bids import FmriprepRun, find_fmriprep_runs, read_tr
from dsr.io.calcium import extract_calcium, read_nwb, read_suite2p
from dsr.io.fmriprep import extract_fmriprep_subject
from dsr.io.result import ExtractionResult, align_regions, load_extraction, save_extraction
from dsr.io.screening import exclude_nonstationary, screen_nonstationarity

__all__ = [
    "ExtractionResult",
    "FmriprepRun",
    "align_regions",
    "exclude_nonstationary",
    "extract_array",
    "extract_calcium",
    "extract_fmriprep_subject",
    "find_fmriprep_runs",
    "load_array",
    "load_extraction",
    "read_nwb",
    "read_suite2p",
    "read_tr",
    "save_extraction",
    "screen_nonstationarity",
]
