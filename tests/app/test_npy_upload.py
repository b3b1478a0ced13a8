"""``.npy`` uploads read straight into their stored container (issue 12)."""

from __future__ import annotations

import io
import tempfile
from typing import Any

import numpy as np
import pytest

from app.datasets import files as dataset_files
from app.datasets.blobs import allocate, encode_arrays, pack
from app.datasets.files import read_npy
from app.errors import InvalidInputError
from engine import serialization


def _spooled(array: np.ndarray[Any, Any]) -> Any:
    """The array as ``np.save`` writes it, in a spooled file that rolled over to disk
    (what the multipart parser hands the route for a large upload)."""
    spool = tempfile.SpooledTemporaryFile(max_size=16)  # noqa: SIM115 - closed by the caller
    np.save(spool, array)
    spool.seek(0)
    return spool


@pytest.mark.parametrize("source", ["file", "bytes"])
def test_npy_is_copied_once_into_its_container(source: str) -> None:
    rng = np.random.default_rng(3)
    table = rng.normal(size=(257, 6))
    table[:, 2] = rng.integers(0, 4, 257)
    file = _spooled(table) if source == "file" else io.BytesIO(_npy_bytes(table))
    parsed = read_npy(file, "2", max_cells=10_000)
    expected_X = np.delete(table, 2, axis=1)
    expected = encode_arrays({"X": expected_X, "y": table[:, [2]]})
    assert parsed.blob == expected
    assert np.shares_memory(parsed.X, np.frombuffer(parsed.blob, np.uint8))
    assert np.shares_memory(parsed.y, np.frombuffer(parsed.blob, np.uint8))
    decoded = serialization.decode_arrays(bytes(parsed.blob))
    np.testing.assert_array_equal(decoded["X"], expected_X)
    assert parsed.feature_names == ("c0", "c1", "c3", "c4", "c5")


def _npy_bytes(array: np.ndarray[Any, Any]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_npy_layouts_give_the_same_container() -> None:
    rng = np.random.default_rng(4)
    table = rng.normal(size=(50, 5))
    expected = encode_arrays({"X": table[:, [0, 2, 4]], "y": table[:, [1, 3]]})
    for variant in (table, np.asfortranarray(table), table.astype(">f8")):
        assert read_npy(_spooled(variant), "1,3", max_cells=1000).blob == expected
    labels = rng.integers(0, 3, size=(50, 3))
    parsed = read_npy(_spooled(labels), "-1", max_cells=1000)
    assert parsed.target_type == "labels"
    assert parsed.blob == encode_arrays({"X": labels[:, :2].astype(float), "y": labels[:, 2]})


def test_a_bad_cell_in_a_later_block_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    table = np.ones((1000, 4))
    table[777, 1] = np.inf  # X column 0: column 0 is the target
    monkeypatch.setattr(dataset_files, "NPY_BLOCK_BYTES", 4 * 8 * 100)  # 100 rows a block
    with pytest.raises(InvalidInputError, match=r"X\[777, 0\] is not finite"):
        read_npy(_spooled(table), "0", max_cells=10_000)
    table[777, 1] = 1.0
    table[5, 0] = np.nan
    with pytest.raises(InvalidInputError, match=r"y\[5\] is not finite"):
        read_npy(_spooled(table), "0", max_cells=10_000)


def test_truncated_mapped_npy_is_refused() -> None:
    content = _npy_bytes(np.ones((30, 3)))[:-9]
    spool = tempfile.SpooledTemporaryFile(max_size=16)  # noqa: SIM115
    with spool:
        spool.write(content)
        spool.seek(0)
        with pytest.raises(InvalidInputError, match="truncated"):
            read_npy(spool, "0", max_cells=1000)


def test_standardized_npy_upload_scales_its_stored_arrays(client: Any) -> None:
    rng = np.random.default_rng(6)
    X = rng.normal(3.0, 2.0, size=(64, 3))
    y = rng.normal(size=64)
    content = _npy_bytes(np.column_stack([X, y]))
    response = client.post(
        "/v1/datasets/file",
        files={"file": ("s.npy", content)},
        data={"target": "-1", "standardize": "true"},
    )
    assert response.status_code == 201, response.text
    data = client.get(f"/v1/datasets/{response.json()['id']}/data").json()
    stored = np.asarray(data["X"])
    np.testing.assert_allclose(stored.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(stored.std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(stored, (X - X.mean(axis=0)) / X.std(axis=0), rtol=1e-12)
    stored_y = np.asarray(data["y"]).reshape(-1)
    np.testing.assert_array_equal(stored_y, y)


def test_decode_without_copy_views_the_stored_bytes() -> None:
    arrays = {"X": np.arange(12.0).reshape(4, 3), "y": np.arange(4)}
    blob = serialization.encode_arrays(arrays)
    views = serialization.decode_arrays(blob, copy=False)
    copies = serialization.decode_arrays(blob)
    for name, array in arrays.items():
        np.testing.assert_array_equal(views[name], array)
        np.testing.assert_array_equal(copies[name], array)
        assert np.shares_memory(views[name], np.frombuffer(blob, np.uint8))
        assert not views[name].flags.writeable
        assert not np.shares_memory(copies[name], np.frombuffer(blob, np.uint8))


def test_in_place_containers_are_the_engines_bytes_with_aligned_views() -> None:
    """``app.datasets.blobs`` writes the engine's container without its copies: the same
    bytes (so the same sha256) from encode_arrays, pack and a filled allocate."""
    rng = np.random.default_rng(4)
    arrays = {
        "X": rng.normal(size=(5, 3)).astype(">f8"),  # stored little-endian
        "y": np.array([1, 0, 1, 1, 0], np.int32),
        "mask": np.array([True, False, True]),
        "w": rng.normal(size=(2, 2)).astype(np.float32),
    }
    expected = serialization.encode_arrays(arrays)
    assert bytes(encode_arrays(arrays)) == expected
    packed, views = pack(arrays)
    assert bytes(packed) == expected
    empty, slots = allocate(
        {name: (a.shape, a.dtype.newbyteorder("<").str) for name, a in arrays.items()}
    )
    for name, array in arrays.items():
        slots[name][...] = array
        assert views[name].flags.aligned and not views[name].flags.writeable
        np.testing.assert_array_equal(views[name], array)
    assert bytes(empty) == expected
