"""Malformed inputs through the public entry points end in a DsrError (CLI: exit code 2 and a
message naming the input), never a bare traceback, and nothing is written to the output folder."""

from __future__ import annotations

import numpy as np
import pytest

from dsr.cli import main
from dsr.errors import DsrError
from dsr.signal.kernels import make_kernel
from dsr.training.loop import TrainingConfig, fit_ensemble

T, N = 120, 3
FAST = ["--epochs", "1", "--batches-per-epoch", "1", "--seq-len", "30", "--hidden-dim", "4",
        "--n-models", "1", "--device", "cpu"]  # fmt: skip


def _good(n_time=T, n_obs=N):
    return np.random.default_rng(0).standard_normal((n_time, n_obs))


def _npy(arr):
    def write(path):
        np.save(path.with_suffix(".npy"), arr)
        return path.with_suffix(".npy")

    return write


def _raw(suffix, payload: bytes):
    def write(path):
        p = path.with_suffix(suffix)
        p.write_bytes(payload)
        return p

    return write


def _with(arr, idx, value):
    arr = arr.astype(float).copy()
    arr[idx] = value
    return arr


CLI_CASES = {
    # name: (data writer, extra args, confounds writer or None, word expected in the message)
    "nan": (_npy(_with(_good(), (5, 1), np.nan)), [], None, "NaN"),
    "inf": (_npy(_with(_good(), (5, 1), np.inf)), [], None, "infinite"),
    "constant column": (_npy(_with(_good(), (slice(None), 2), 1.0)), [], None, "constant"),
    "wrong orientation": (_npy(_good().T.copy()), [], None, "transpose"),
    "shorter than kernel": (_npy(_good(15)), [], None, "time points"),
    "string dtype": (_npy(np.array([["a", "b"], ["c", "d"], ["e", "f"]])), [], None, "sub-01_bold"),
    "complex dtype": (_npy(_good().astype(complex)), [], None, "sub-01_bold"),
    "3-D array": (_npy(np.zeros((T, N, 2))), [], None, "sub-01_bold"),
    "empty file": (_raw(".csv", b""), [], None, "empty"),
    "zero regions": (_npy(np.zeros((T, 0))), [], None, "sub-01_bold"),
    "non-UTF-8 csv": (_raw(".csv", "a;b\n1,\xe9\n".encode("latin-1")), [], None, "sub-01_bold"),
    "non-UTF-8 tsv": (_raw(".tsv", b"x\ty\n\xff\xfe\t1\n"), [], None, "sub-01_bold"),
    "missing file": (lambda p: p.with_suffix(".npy"), [], None, "sub-01_bold"),
    "mismatched confounds": (_npy(_good()), [], _npy(_good(T - 7, 2)), "confounds"),
    "nan confounds": (_npy(_good()), [], _npy(_with(_good(T, 2), (3, 0), np.nan)), "confounds"),
    "negative TR": (_npy(_good()), ["--tr", "-1.4"], None, "tr"),
    "zero TR": (_npy(_good()), ["--tr", "0"], None, "tr"),
    "NaN TR": (_npy(_good()), ["--tr", "nan"], None, "tr"),
    "negative fs": (_npy(_good()), ["--fs", "-30"], None, "fs"),
    "bad seq-len": (_npy(_good()), ["--seq-len", "0"], None, "seq_len"),
    "bad n-models": (_npy(_good()), ["--n-models", "0"], None, "n_restarts"),
    "bad device": (_npy(_good()), ["--device", "tpu"], None, "device"),
}
ARGPARSE_CASES = {  # rejected by argparse itself (exit 2, usage message)
    "missing TR": ["--out"],
    "unknown model": ["--model", "LSTM"],
    "unknown decoder": ["--decoder", "magic"],
    "non-numeric TR": ["--tr", "fast"],
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_rejects_bad_input(case, tmp_path, capsys):
    write, extra, conf, word = CLI_CASES[case]
    data = write(tmp_path / "sub-01_bold")
    out = tmp_path / "out"
    args = ["fit", str(data), "--out", str(out), *FAST]
    if not any(a in ("--tr", "--fs") for a in extra):
        args += ["--tr", "2.0"]
    if conf is not None:
        args += ["--confounds", str(conf(tmp_path / "confounds"))]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    assert word.lower() in err.lower(), err
    assert not out.exists() or not any(out.rglob("*")), "nothing may be written on bad input"


@pytest.mark.parametrize("case", sorted(ARGPARSE_CASES))
def test_cli_argparse_errors_exit_2(case, tmp_path, capsys):
    data = tmp_path / "x.npy"
    np.save(data, _good())
    out = tmp_path / "out"
    extra = ARGPARSE_CASES[case]
    args = ["fit", str(data), *FAST]
    if case == "missing TR":
        args += ["--out", str(out)]
    else:
        args += ["--out", str(out), "--tr", "2.0", *extra]
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err
    assert not out.exists()


KERNEL = make_kernel("hrf", tr_s=2.0)
CFG = TrainingConfig(epochs=1, batches_per_epoch=1, seq_len=30, hidden_dim=4)
API_CASES = {
    "duplicate subject ids": (dict(data=[_good(), _good()], subject_ids=["a", "a"]), "unique"),
    "ids/data mismatch": (dict(data=[_good()], subject_ids=["a", "b"]), "unique"),
    "bare 2-D array": (dict(data=_good()), "list"),
    "different N": (dict(data=[_good(), _good(n_obs=4)]), "same number of regions"),
    "nan data": (dict(data=[_with(_good(), (0, 0), np.inf)]), "infinite"),
    "confounds mismatch": (dict(data=[_good()], confounds=[_good(T - 1, 2)]), "confounds"),
    "confounds count": (dict(data=[_good(), _good()], confounds=[_good(T, 2)]), "confounds"),
    "nan kernel": (dict(data=[_good()], kernel=np.array([0.5, np.nan])), "kernel"),
    "empty kernel": (dict(data=[_good()], kernel=np.array([])), "kernel"),
    "2-D kernel": (dict(data=[_good()], kernel=np.ones((3, 3))), "kernel"),
    "object data": (dict(data=[np.array([["a"] * N] * T, dtype=object)]), "numeric"),
    "no subjects": (dict(data=[]), "data"),
    "seq_len below kernel": (
        dict(data=[_good(400)], config=TrainingConfig(epochs=1, seq_len=5)),
        "kernel",
    ),
    "bad device": (dict(data=[_good()], device="gpu7"), "device"),
}


@pytest.mark.parametrize("case", sorted(API_CASES))
def test_fit_ensemble_rejects_bad_input(case):
    kwargs, word = API_CASES[case]
    kwargs = {"kernel": KERNEL, "config": CFG, "device": "cpu", **kwargs}
    data = kwargs.pop("data")
    with pytest.raises(DsrError, match=f"(?i){word}"):
        fit_ensemble(data, **kwargs)


@pytest.mark.parametrize(
    ("field", "value"),
    [("model", "GRU"), ("decoder", "nope"), ("alpha", 1.5), ("epochs", 0), ("lr_start", -1.0),
     ("checkpoint_every", -1), ("hidden_dim", 2.5), ("grad_clip", -1.0)],
)  # fmt: skip
def test_training_config_rejects_bad_values(field, value):
    with pytest.raises(DsrError, match=field):
        TrainingConfig(**{field: value})
