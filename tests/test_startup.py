"""Start-up stays light: ``dsr --help`` and every workflow job's ``import dsr.pipeline`` (also done
by Snakemake at parse time) load neither torch nor scipy, nilearn or matplotlib (5-8 s with them)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "scipy", "nilearn", "matplotlib", "numba")


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_help_imports_nothing_heavy():
    code = "from dsr.cli import build_parser\nbuild_parser().format_help()"
    assert _loaded_after(code) == []


def test_pipeline_import_is_light():
    assert _loaded_after("import dsr.pipeline") == []


def test_fit_help_still_lists_the_registries(capsys):
    from dsr.cli import main

    try:
        main(["fit", "--help"])
    except SystemExit:
        pass
    text = capsys.readouterr().out
    assert "cshPLRNN" in text and "convolved" in text
