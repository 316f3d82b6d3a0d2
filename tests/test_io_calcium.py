import numpy as np
import pytest

from dsr.errors import DsrInputError
from dsr.io import extract_calcium, read_nwb, read_suite2p
from dsr.synthetic.calcium_demo import write_calcium_demo


@pytest.fixture(scope="module")
def suite2p_dir(tmp_path_factory):
    return write_calcium_demo(tmp_path_factory.mktemp("s2p"), n_frames=400, n_cells=7, n_noncells=3)


def test_suite2p_reader_shapes_and_correction(suite2p_dir):
    x, info = read_suite2p(suite2p_dir)
    assert x.shape == (400, 7) and info["fs_hz"] == 10.0
    f = np.load(suite2p_dir / "plane0/F.npy")
    fneu = np.load(suite2p_dir / "plane0/Fneu.npy")
    cells = info["rois"]["plane0"]
    np.testing.assert_allclose(x, (f[cells] - 0.7 * fneu[cells]).T, rtol=1e-6)


def test_extract_calcium_recovers_dff(suite2p_dir):
    res = extract_calcium(suite2p_dir, dff_window_s=20.0)
    truth = np.load(suite2p_dir / "ground_truth/dff.npy")
    corr = [np.corrcoef(res.timeseries[:, i], truth[:, i])[0, 1] for i in range(7)]
    assert min(corr) > 0.9 and res.meta["fs_hz"] == 10.0 and "tr_s" not in res.meta
    grouped = extract_calcium(suite2p_dir, n_groups=3)
    assert grouped.timeseries.shape == (400, 3) and len(grouped.meta["cleaning"]["groups"]) == 3


def test_suite2p_without_iscell_names_folder(suite2p_dir, tmp_path):
    plane = tmp_path / "plane0"
    plane.mkdir()
    for name in ("F.npy", "Fneu.npy", "ops.npy"):
        (plane / name).write_bytes((suite2p_dir / "plane0" / name).read_bytes())
    with pytest.raises(DsrInputError, match=r"plane0: iscell\.npy is missing"):
        read_suite2p(tmp_path)


def test_nwb_roi_response_series(tmp_path):
    pynwb = pytest.importorskip("pynwb")
    from datetime import datetime, timezone

    from pynwb.ophys import ImageSegmentation, OpticalChannel, RoiResponseSeries

    nwb = pynwb.NWBFile(
        session_description="demo",
        identifier="id",
        session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc),
    )
    dev = nwb.create_device("scope")
    chan = OpticalChannel(name="ch", description="green", emission_lambda=500.0)
    plane = nwb.create_imaging_plane(
        name="plane",
        optical_channel=chan,
        description="d",
        device=dev,
        excitation_lambda=600.0,
        imaging_rate=15.0,
        indicator="GCaMP6f",
        location="V1",
    )
    mod = nwb.create_processing_module(name="ophys", description="ophys")
    img_seg = ImageSegmentation()
    mod.add(img_seg)
    seg = img_seg.create_plane_segmentation(name="ps", description="d", imaging_plane=plane)
    for _ in range(7):
        seg.add_roi(image_mask=np.ones((4, 4)))
    data = np.random.default_rng(0).normal(size=(60, 7))
    rois = seg.create_roi_table_region("all", list(range(7)))
    mod.add(RoiResponseSeries(name="dff", data=data, rois=rois, unit="1", rate=15.0))
    path = tmp_path / "demo.nwb"
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    x, info = read_nwb(path)
    assert x.shape == (60, 7) and info["fs_hz"] == 15.0
    np.testing.assert_allclose(x, data)
