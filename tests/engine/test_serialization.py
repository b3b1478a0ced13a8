"""Arrays and training states to bytes and back: bit-exact, self-describing, never pickle."""

from __future__ import annotations

import json
import pickle
import struct
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

import engine
from engine.serialization import (
    ALIGNMENT,
    MAGIC,
    SerializationError,
    decode_arrays,
    decode_container,
    decode_state,
    encode_arrays,
    encode_state,
)


def assert_bit_equal(a: NDArray[Any], b: NDArray[Any]) -> None:
    """Same dtype, same shape, same bytes (so NaN payloads and -0.0 count too)."""
    assert a.dtype == b.dtype
    assert a.shape == b.shape
    assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def special_floats(dtype: type[np.floating]) -> NDArray[Any]:
    info = np.finfo(dtype)
    values = [0.0, -0.0, 1.0, -1.5, np.nan, np.inf, -np.inf, info.tiny, info.max, info.eps]
    rng = np.random.default_rng(0)
    return np.concatenate([np.array(values, dtype), rng.normal(size=50).astype(dtype)])


ARRAYS: dict[str, NDArray[Any]] = {
    "f64": special_floats(np.float64),
    "f32": special_floats(np.float32),
    "f64_matrix": np.random.default_rng(1).normal(size=(7, 3)),
    "f32_3d": np.random.default_rng(2).normal(size=(2, 3, 4)).astype(np.float32),
    "i64": np.array([0, -1, 2**62, -(2**63), 2**63 - 1], np.int64),
    "i32": np.array([[1, -2], [3, 2**31 - 1]], np.int32),
    "bool": np.array([True, False, True]),
    "u8": np.arange(256, dtype=np.uint8),
    "empty_f64": np.zeros((0,)),
    "empty_matrix": np.zeros((0, 5), np.float32),
    "empty_i64": np.zeros((3, 0), np.int64),
    "scalar": np.array(3.25),
}


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_each_array_round_trips_bit_exactly(name: str) -> None:
    decoded = decode_arrays(encode_arrays({name: ARRAYS[name]}))
    assert list(decoded) == [name]
    assert_bit_equal(decoded[name], ARRAYS[name])


def test_many_arrays_and_meta_round_trip_together() -> None:
    meta = {"epoch": 3, "nested": {"list": [1, 2.5, None, "x"], "flag": True}, "big": 2**80}
    arrays, decoded_meta = decode_container(encode_arrays(ARRAYS, meta))
    assert list(arrays) == list(ARRAYS)
    for name, value in ARRAYS.items():
        assert_bit_equal(arrays[name], value)
    assert decoded_meta == meta


def test_non_contiguous_and_big_endian_inputs_are_stored_as_their_values() -> None:
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    strided = base[::2, ::3]
    fortran = np.asfortranarray(base)
    big_endian = base.astype(">f8")
    decoded = decode_arrays(encode_arrays({"s": strided, "f": fortran, "b": big_endian}))
    np.testing.assert_array_equal(decoded["s"], strided)
    np.testing.assert_array_equal(decoded["f"], base)
    np.testing.assert_array_equal(decoded["b"], base)
    assert decoded["b"].dtype == np.dtype("<f8")


def test_views_into_a_container_are_aligned_whatever_the_names_and_sizes() -> None:
    """Odd-sized arrays (u8, bool, 3 x i32) and names of every length before 8-byte ones:
    each array starts at a multiple of ALIGNMENT, so views need no copy."""
    for name_length in range(1, 2 * ALIGNMENT + 1):
        arrays = {"n" * name_length: ARRAYS["u8"][:3], **ARRAYS, "last": ARRAYS["f64"]}
        blob = encode_arrays(arrays, {"pad": "m" * name_length})
        views = decode_arrays(blob, copy=False)
        for name, array in arrays.items():
            assert views[name].flags.aligned, (name_length, name)
            assert np.shares_memory(views[name], np.frombuffer(blob, np.uint8)) or not array.size
            assert_bit_equal(views[name], array)


def test_an_unaligned_container_of_an_older_version_decodes_to_aligned_arrays() -> None:
    """Containers stored before ALIGNMENT put arrays right after one another and the
    header: decoded without copying, an unaligned array is copied instead of viewed."""
    arrays = {"b": np.array([True, False, True]), "x": np.arange(6.0).reshape(3, 2)}
    entries, offset = [], 0
    for name, array in arrays.items():
        entries.append(
            {
                "name": name,
                "dtype": array.dtype.str,
                "shape": list(array.shape),
                "offset": offset,
                "nbytes": array.nbytes,
            }
        )
        offset += array.nbytes
    header = json.dumps({"arrays": entries, "meta": {}}, separators=(",", ":")).encode()
    header += b" " * ((-len(header) - len(MAGIC) - 4) % ALIGNMENT + 1)  # x off by 3+1
    blob = b"".join(
        [MAGIC, struct.pack("<I", len(header)), header, *(a.tobytes() for a in arrays.values())]
    )
    views = decode_arrays(blob, copy=False)
    assert views["x"].flags.aligned and not np.shares_memory(
        views["x"], np.frombuffer(blob, np.uint8)
    )
    for name, array in arrays.items():
        assert_bit_equal(views[name], array)


def test_decoded_arrays_are_writable_copies() -> None:
    blob = encode_arrays({"a": np.arange(4.0)})
    decoded = decode_arrays(blob)["a"]
    decoded[0] = 99.0  # would raise if it were a read-only view of the bytes
    assert decode_arrays(blob)["a"][0] == 0.0


@pytest.mark.parametrize(
    "value",
    [
        np.array([object(), 1], dtype=object),
        np.array(["text"]),
        np.array([1 + 2j]),
        np.array([1.0], np.float16),
        np.array([1], np.uint64),
        np.zeros(2, dtype=[("a", "<f8")]),
    ],
    ids=["object", "unicode", "complex", "float16", "uint64", "structured"],
)
def test_unsupported_dtypes_are_refused_on_encode(value: NDArray[Any]) -> None:
    with pytest.raises(SerializationError, match="unsupported dtype"):
        encode_arrays({"v": value})


def test_metadata_that_is_not_json_is_refused() -> None:
    with pytest.raises(SerializationError, match="JSON"):
        encode_arrays({}, {"x": object()})


# -- training states -------------------------------------------------------------------------


def trained_state(optimizer: dict[str, Any], dtype: str) -> engine.TrainingState:
    """A state taken mid-run by a callback, with history, best weights and an RNG state."""

    class Take(engine.Callback):
        state: engine.TrainingState | None = None

        def on_epoch_end(
            self, trainer: engine.Trainer, epoch: int, logs: dict[str, float | None], recorded: bool
        ) -> None:
            if epoch == 3:
                self.state = trainer.state(include_history=True)

    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, 4))
    y = rng.integers(0, 3, 30)
    net = engine.Network.from_spec(
        {
            "input_size": 4,
            "layers": [
                {"units": 5, "activation": "tanh"},
                {"units": 3, "activation": "softmax"},
            ],
            "init": {"seed": 11},
        }
    )
    take = Take()
    engine.fit(
        net,
        X,
        y,
        {
            "loss": "cross_entropy",
            "optimizer": optimizer,
            "epochs": 5,
            "batch_size": 7,
            "seed": 2**62 + 12345,
            "dtype": dtype,
            "validation": {"fraction": 0.2},
            "early_stopping": {"patience": 50},
        },
        callbacks=[take],
    )
    assert take.state is not None
    return take.state


@pytest.mark.parametrize(
    ("optimizer", "dtype"),
    [
        ({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True}, "float64"),
        ({"name": "adam", "learning_rate": 0.01}, "float32"),
    ],
)
def test_training_state_round_trips_bit_exactly(optimizer: dict[str, Any], dtype: str) -> None:
    state = trained_state(optimizer, dtype)
    assert state.params.dtype == np.dtype(dtype)
    assert "best_params" in state.arrays
    assert any(key.startswith("optimizer.") for key in state.arrays)
    blob = encode_state(state)
    decoded = decode_state(blob)
    assert decoded.meta == state.meta
    assert decoded.epoch == 3
    assert sorted(decoded.arrays) == sorted(state.arrays)
    for name, value in state.arrays.items():
        assert_bit_equal(decoded.arrays[name], value)
    # The metadata survives a real JSON trip, so the service can store it anywhere.
    assert json.loads(json.dumps(decoded.meta)) == state.meta
    assert encode_state(decoded) == blob


def test_rng_state_with_big_integers_round_trips_and_resumes_the_same_stream() -> None:
    state = trained_state({"name": "sgd", "learning_rate": 0.1}, "float64")
    decoded = decode_state(encode_state(state))
    from engine.checkpoint import rng_state_from_json

    original = rng_state_from_json(state.meta["rng"])
    restored = rng_state_from_json(decoded.meta["rng"])
    assert restored == original
    # PCG64's state is a 128-bit integer: far beyond float64 or int64 range.
    assert restored["state"]["state"] > 2**64
    first, second = np.random.default_rng(), np.random.default_rng()
    first.bit_generator.state = original
    second.bit_generator.state = restored
    np.testing.assert_array_equal(first.permutation(1000), second.permutation(1000))


# -- malformed, truncated and forged input -----------------------------------------------------


def container(header: Any, body: bytes = b"", length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return MAGIC + struct.pack("<I", len(raw) if length is None else length) + raw + body


def entry(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "a", "dtype": "<f8", "shape": [3], "offset": 0, "nbytes": 24}
    base.update(overrides)
    return base


BODY = np.arange(3.0).tobytes()
GOOD = encode_arrays({"a": np.arange(3.0), "b": np.ones((2, 2), np.float32)}, {"epoch": 1})

BAD_BLOBS: dict[str, bytes] = {
    "empty": b"",
    "magic only": MAGIC,
    "wrong magic": b"BPARRAY2" + GOOD[8:],
    "pickle of arrays": pickle.dumps({"a": np.arange(3.0)}),
    "pickle protocol 0": pickle.dumps({"a": [1.0, 2.0]}, protocol=0),
    "npy file": b"\x93NUMPY\x01\x00" + b"{'descr': '<f8'}",
    "header length past end": container({"arrays": []}, length=10_000),
    "header length 2**32-1": MAGIC + struct.pack("<I", 2**32 - 1),
    "header not utf-8": container(b"\xff\xfe\xfd"),
    "header not json": container(b"{arrays: ]"),
    "header truncated json": container(b'{"arrays": [{"name": "a"'),
    "header is a list": container([1, 2]),
    "header is a number": container(7),
    "header is Infinity": container(b"Infinity"),
    "deeply nested header": container(b"[" * 100_000),
    "arrays not a list": container({"arrays": 5}),
    "meta not an object": container({"arrays": [], "meta": [1, 2]}),
    "entry not an object": container({"arrays": ["a"]}),
    "entry without name": container({"arrays": [{"dtype": "<f8", "shape": [3]}]}, BODY),
    "entry name not a string": container({"arrays": [entry(name=1)]}, BODY),
    "object dtype": container({"arrays": [entry(dtype="|O")]}, BODY),
    "pickle-ish dtype": container({"arrays": [entry(dtype="O")]}, BODY),
    "dtype not a string": container({"arrays": [entry(dtype=["<f8"])]}, BODY),
    "unknown dtype": container({"arrays": [entry(dtype="<c16")]}, BODY),
    "shape not a list": container({"arrays": [entry(shape=3)]}, BODY),
    "shape negative": container({"arrays": [entry(shape=[-3])]}, BODY),
    "shape float": container({"arrays": [entry(shape=[3.0])]}, BODY),
    "shape bool": container({"arrays": [entry(shape=[True], nbytes=8)]}, BODY),
    "shape huge": container({"arrays": [entry(shape=[2**62, 2**62])]}, BODY),
    "shape disagrees with nbytes": container({"arrays": [entry(shape=[4])]}, BODY),
    "offset negative": container({"arrays": [entry(offset=-8)]}, BODY),
    "offset float": container({"arrays": [entry(offset=0.0)]}, BODY),
    "offset bool": container({"arrays": [entry(offset=False)]}, BODY),
    "nbytes missing": container({"arrays": [entry(nbytes=None)]}, BODY),
    "reads past the body": container({"arrays": [entry(offset=8)]}, BODY),
    "duplicate names": container({"arrays": [entry(), entry()]}, BODY),
    "body truncated": GOOD[:-1],
    "body cut in half": GOOD[: len(GOOD) // 2],
}


@pytest.mark.parametrize("name", sorted(BAD_BLOBS))
def test_malformed_bytes_raise_serialization_error_only(name: str) -> None:
    blob = BAD_BLOBS[name]
    with pytest.raises(SerializationError):
        decode_container(blob)
    with pytest.raises(SerializationError):
        decode_state(blob)


def test_every_truncation_of_a_valid_container_is_rejected() -> None:
    for cut in range(len(GOOD)):
        with pytest.raises(SerializationError):
            decode_arrays(GOOD[:cut])


def test_every_single_byte_corruption_of_the_header_is_harmless() -> None:
    """Flipping any header byte gives either a clean error or some valid container."""
    (length,) = struct.unpack("<I", GOOD[8:12])
    for position in range(12 + length):
        corrupted = bytearray(GOOD)
        corrupted[position] ^= 0xFF
        try:
            arrays, meta = decode_container(bytes(corrupted))
        except SerializationError:
            continue
        assert isinstance(meta, dict)
        assert all(isinstance(value, np.ndarray) for value in arrays.values())


def test_bytes_crafted_as_a_pickle_are_never_unpickled(monkeypatch: pytest.MonkeyPatch) -> None:
    class Boom:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (pytest.fail, ("pickle.loads ran: the decoder unpickled untrusted bytes",))

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the decoder must never call pickle")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    payload = pickle.dumps(Boom())
    for blob in (payload, MAGIC + payload, container({"arrays": [entry(dtype="|O")]}, payload)):
        with pytest.raises(SerializationError):
            decode_container(blob)
    # A real container decodes with pickle unavailable: the format does not need it.
    assert decode_arrays(GOOD)["a"].tolist() == [0.0, 1.0, 2.0]
