import numpy as np
import pytest

from dsr.errors import DsrInputError
from dsr.io import extract_array, load_array


def test_npy_and_csv_round_trip(tmp_path):
    x = np.random.default_rng(0).normal(size=(60, 7))
    np.save(tmp_path / "a.npy", x)
    np.testing.assert_allclose(load_array(tmp_path / "a.npy"), x)
    header = ",".join(f"r{i}" for i in range(7))
    np.savetxt(tmp_path / "a.csv", x, delimiter=",", header=header, comments="")
    np.testing.assert_allclose(load_array(tmp_path / "a.csv"), x)
    res = extract_array(tmp_path / "a.csv", tr_s=2.0)
    assert res.meta["region_names"][0] == "r0" and res.meta["tr_s"] == 2.0


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("e.csv", b"", "is empty"),
        ("t.csv", b"1,2\n3,x\n", "non-numeric value 'x' at data row 2"),
        ("u.csv", b"1,2\n\xff\xfe,3\n", "not UTF-8"),
        ("n.csv", b"1,2\n3,nan\n4,5\n", "NaN"),
        ("i.csv", b"1,2\n3,inf\n4,5\n", "infinite"),
    ],
)
def test_bad_text_files(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DsrInputError, match=match):
        load_array(tmp_path / name)


def test_transposed_array_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((7, 60)))
    with pytest.raises(DsrInputError, match=r"x\.npy: shape \(7, 60\).*transpose"):
        load_array(tmp_path / "x.npy")


def test_extracted_arrays_are_zscored_and_constant_columns_refused(tmp_path):
    x = np.random.default_rng(1).normal(3.0, 5.0, size=(80, 4))
    np.save(tmp_path / "sub-01.npy", x)
    res = extract_array(tmp_path / "sub-01.npy", tr_s=1.0)
    np.testing.assert_allclose(res.timeseries.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(res.timeseries.std(0, ddof=1), 1, rtol=1e-5)
    np.testing.assert_allclose(res.meta["column_sd"], x.std(0, ddof=1))
    x[:, 2] = 7.0
    np.save(tmp_path / "sub-02.npy", x)
    with pytest.raises(DsrInputError, match=r"sub-02\.npy: column\(s\) \[2\] are constant"):
        extract_array(tmp_path / "sub-02.npy", tr_s=1.0)
