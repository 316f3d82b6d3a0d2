"""Route logging, warnings and stderr of a workflow script to its Snakemake log file."""

import logging
import sys


def setup(log_path: str) -> None:
    handle = open(log_path, "w", buffering=1)  # noqa: SIM115 (kept open for the job's lifetime)
    sys.stderr = sys.stdout = handle
    logging.basicConfig(
        stream=handle, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.captureWarnings(True)
