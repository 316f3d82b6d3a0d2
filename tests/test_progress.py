import logging

import dsr.progress
from dsr.progress import Progress


def test_progress_lines_eta_and_lazy_detail(monkeypatch, caplog):
    clock = iter([0.0, 1.0, 2.0, 30.0, 60.0])  # start, then one reading per update
    monkeypatch.setattr(dsr.progress.time, "perf_counter", lambda: next(clock))
    calls = []

    def detail():
        calls.append(1)
        return "loss 0.5"

    log = logging.getLogger("dsr.test_progress")
    progress = Progress(log, "epoch", total=10, start=2, interval_s=10.0)
    with caplog.at_level(logging.INFO, logger="dsr.test_progress"):
        progress.update(3, detail)  # t = 1 s: too soon, detail not evaluated
        progress.update(4, detail)  # t = 2 s: too soon
        progress.update(6, detail)  # t = 30 s: 4 epochs of this run in 30 s -> 4 left take 30 s
        progress.update(10, detail)  # last iteration: always written
    assert caplog.messages == [
        "epoch 6/10  loss 0.5  ETA 00:00:30",
        "epoch 10/10  loss 0.5  ETA 00:00:00",
    ]
    assert len(calls) == 2
