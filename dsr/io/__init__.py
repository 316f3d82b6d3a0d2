"""Input layer: recordings on disk -> ``(T, N)`` region series, confounds and metadata.

fMRIPrep derivatives (BIDS discovery, atlas extraction with nilearn, confounds), calcium imaging
(suite2p folders, NWB files), plain arrays (.npy/.csv), stationarity screening, and the extraction
result that every later stage reads (``timeseries.npy``, ``confounds.npy``, ``meta.json``).

Exports: ``ExtractionResult``, ``save_extraction``, ``load_extraction``, ``align_regions``,
``region_table``, ``check_no_empty_regions``,
``FmriprepRun``, ``find_fmriprep_runs``, ``read_tr``, ``extract_fmriprep_subject``,
``extract_calcium``, ``read_suite2p``, ``read_nwb``, ``extract_array``, ``load_array``,
``screen_nonstationarity``.
"""

from dsr.io.arrays import extract_array, load_array
from dsr.io.bids import FmriprepRun, find_fmriprep_runs, read_tr
from dsr.io.calcium import extract_calcium, read_nwb, read_suite2p
from dsr.io.fmriprep import extract_fmriprep_subject
from dsr.io.regions import align_regions, check_no_empty_regions, region_table
from dsr.io.result import ExtractionResult, load_extraction, save_extraction
from dsr.io.screening import screen_nonstationarity

__all__ = [
    "ExtractionResult",
    "FmriprepRun",
    "align_regions",
    "check_no_empty_regions",
    "extract_array",
    "extract_calcium",
    "extract_fmriprep_subject",
    "find_fmriprep_runs",
    "load_array",
    "load_extraction",
    "read_nwb",
    "read_suite2p",
    "read_tr",
    "region_table",
    "save_extraction",
    "screen_nonstationarity",
]
