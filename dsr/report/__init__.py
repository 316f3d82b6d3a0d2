"""Report layer: subject and cohort reports and the statistics that compare subjects.

``figures`` draws every plot with matplotlib; ``html`` renders self-contained HTML reports with
jinja2 (figures embedded as PNG); ``cohort`` compares subjects (cross-subject D_stsp matrix,
embedding, clustering, within- vs between-subject λ_max variance) and writes the cohort outputs.

Exports: ``write_subject_report``, ``SUBJECT_FIGURES``, ``render``, ``encode_png``.
"""

from dsr.report.html import SUBJECT_FIGURES, encode_png, render, write_subject_report

__all__ = ["SUBJECT_FIGURES", "encode_png", "render", "write_subject_report"]
