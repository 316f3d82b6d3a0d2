"""The subject report's table of the extracted data: shape, sampling, regions, cleaning, empty
regions, regions dropped for the cohort (``extract.align_regions``) and the non-stationarity
screen (``dsr.io.screening``), all read from the extraction's ``meta.json``."""

from __future__ import annotations

import numpy as np


def extraction_summary(meta: dict, x: np.ndarray) -> dict[str, str]:
    """Rows (label -> text) describing one subject's extracted ``x`` (T, N) and its ``meta``."""
    cleaning = meta.get("cleaning", {})
    rate = (
        ("TR (s)", meta["tr_s"]) if meta.get("tr_s") else ("sampling rate (Hz)", meta.get("fs_hz"))
    )
    return {
        "samples × regions": f"{x.shape[0]} × {x.shape[1]}",
        rate[0]: rate[1],
        "regions": ", ".join(map(str, meta.get("region_names", []))),
        "confounds strategy": ", ".join(cleaning.get("confounds_strategy") or []) or "none",
        "confounds mode": cleaning.get("confounds_mode", "n/a"),
        "confound columns": ", ".join(cleaning.get("confound_columns", [])) or "none",
        "empty regions": ", ".join(map(str, meta.get("empty_regions", []))) or "none",
        **_cohort_dropped(meta),
        **_nonstationarity(meta),
        "source": ", ".join(f"{k}: {v}" for k, v in meta.get("files", {}).items()),
    }


def _cohort_dropped(meta: dict) -> dict[str, str]:
    """The row for regions that ``extract.align_regions`` dropped (not aligned: no row)."""
    if "cohort_dropped_regions" not in meta:
        return {}
    dropped = [
        f"{d['region_name']} (empty in {', '.join(map(str, d['missing_in']))})"
        for d in meta["cohort_dropped_regions"]
    ]
    return {"dropped for the cohort (extract.align_regions)": "; ".join(dropped) or "none"}


def _nonstationarity(meta: dict) -> dict[str, str]:
    """The row for the screen: the subject's verdict and the regions over the threshold."""
    screen = meta.get("nonstationarity")
    if not screen:
        return {}
    flags = zip(meta.get("region_names", []), screen["region_flag"], strict=True)
    regions = ", ".join(name for name, flag in flags if flag) or "none"
    verdict = "FLAGGED" if screen["flagged"] else "not flagged"
    text = (
        f"{verdict} by the convSSM paper's rule: r(moving variance, time) = "
        f"{screen['subject_corr']:.2f}, threshold {screen['threshold']:g}; regions over it: {regions}"
    )
    if "subject_p" in screen:  # screens written before the surrogate test have no p
        p = screen["subject_p"]
        text += f". Against stationary surrogates p = {p:.2g}: " + (
            "a drifting variance" if p < 0.05 else "consistent with stationarity"
        )
    return {"non-stationarity screen": text}
