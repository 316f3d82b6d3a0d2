"""Subject and cohort reports: matplotlib figures and self-contained HTML (jinja2)."""

from dsr.report.html import SUBJECT_FIGURES, encode_png, render, write_subject_report

__all__ = ["SUBJECT_FIGURES", "encode_png", "render", "write_subject_report"]
