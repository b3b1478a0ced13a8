"""Columnar tables (issue 10, defect 6: a 100,000-column CSV with a text column): the
exact path's wide blocks, read all at once, give what column by column gives, and
:func:`encode_table` gives the same from a :class:`Table` as from :class:`Column` objects."""

from __future__ import annotations

import random
import re
from typing import Any

import numpy as np
import pytest

from app.datasets import parsing
from app.datasets.parsing import parse_csv
from app.datasets.tabular import (
    MISSING_OPTIONS,
    Column,
    ColumnKinds,
    Numbers,
    Table,
    encode_table,
    table_of,
)
from app.errors import InvalidInputError

NUMBERS = ["1", "0", "12", "1.5", "-3", "1e3", "+2", " 4 ", "007", "99999", ".5", "5.", "1E-2"]
NUMBERS += ["-0", "2147483647", "2147483648", "1.0"]
LABELS = ["1", "0", "2", "3", "10", "007", " 5"]
TEXT = ["a", "setosa", "x y", "café", "b", "virginica", " c ", '"a,b"', '"x\ny"', '"q"']
TROUBLE = ["1e400", "-1e400", "=f", "@x", "inf", "nan", "1_000", "0x10", "1..2", "e", "+", "-"]
TROUBLE += [".", "1\x002", "1e", "--1", "\u0661", "Inf", "a", "1", '"1"', "9" * 400, "a\x00"]
EMPTY = ["", " ", "  "]


def random_csv(seed: int) -> tuple[bytes, list[str]]:
    """A random CSV (numbers, labels, text, empty cells, quotes, now and then a cell that
    is an error or makes the wide path give up) and its targets."""
    rng = random.Random(seed)
    width = rng.choice([2, 3, 7, 40, 255, 256, 257, 300, 1100])
    rows = rng.choice([1, 2, 3, 7, 20])
    p_text = rng.choice([0.0, 0.01, 0.1, 0.5])
    weights = [45, 45, 100 * p_text, 100 * p_text]
    kinds = rng.choices(["numbers", "labels", "text", "categories"], weights, k=width)
    if rng.random() < 0.1:
        kinds[rng.randrange(width)] = "empty"
    pools = {"numbers": NUMBERS, "labels": LABELS, "text": TEXT, "categories": ["a", "b"]}
    p_empty = rng.choice([0.0, 0.3 / width, 1 / width, 0.05])
    p_trouble = rng.choice([0.0, 0.0, 0.5, 2.0]) / (width * rows)
    quotes = rng.random() < 0.5
    lines = [",".join(f"c{j}" for j in range(width))]
    for _ in range(rows):
        cells = []
        for kind in kinds:
            if rng.random() < p_trouble:
                cell = rng.choice(TROUBLE)
            elif kind == "empty" or rng.random() < p_empty:
                cell = rng.choice(EMPTY)
            else:
                cell = rng.choice(pools[kind])
            if not quotes and '"' in cell:
                cell = "z"
            cells.append(cell)
        lines.append(",".join(cells))
    targets = [f"c{j}" for j in rng.sample(range(width), rng.choice([1, 1, 2]))]
    return ("\n".join(lines) + "\n").encode(), targets


def outcome(content: bytes, targets: list[str], missing: Any) -> Any:
    """Everything a parse gives, bit for bit, or its error."""
    try:
        parsed = parse_csv(content, targets, missing=missing)
    except InvalidInputError as error:
        return (error.loc, str(error))
    return (
        parsed.X.tobytes(),
        parsed.X.shape,
        parsed.y.tobytes(),
        parsed.y.dtype,
        parsed.y.shape,
        parsed.target_type,
        parsed.feature_names,
        parsed.target_names,
        parsed.classes,
        None if parsed.columns is None else list(parsed.columns),
    )


@pytest.mark.parametrize("seeds", [range(i, i + 20) for i in range(0, 120, 20)])
def test_wide_blocks_read_at_once_equal_column_by_column(
    seeds: range, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random files, below and above WIDE_COLUMNS, rows from csv or pyarrow: all columns at
    once (WIDE_COLUMNS forced to 1) and one by one (forced past the width) give the same
    arrays, names and kinds bit for bit, or the same error, for every missing option."""
    arrow_cells = parsing._arrow_cells
    for seed in seeds:
        content, targets = random_csv(seed)
        for missing in MISSING_OPTIONS:
            default = outcome(content, targets, missing)
            for threshold in (1, 10**9):
                monkeypatch.setattr(parsing, "WIDE_COLUMNS", threshold)
                for reader in (arrow_cells, lambda *args: None):  # pyarrow's rows or csv's
                    monkeypatch.setattr(parsing, "_arrow_cells", reader)
                    assert outcome(content, targets, missing) == default, (seed, missing)


WIDE_CASES = [
    ("1,1..2,a", "line 3, column 'c298': '1..2' is not a number"),  # column by column
    ("1,1\x002,a", "line 4, column 'c297': '1e400' is not finite"),  # NUL: a category
    ("1,1e400,=a", "line 3, column 'c298': '1e400' is not finite"),  # first in its row
    ("1,=a,1e400", "line 3, column 'c298': '=a' is not a number"),  # the formula first
    ("1,inf,a", "line 3, column 'c298': 'inf' is not finite"),
    ("1,,a", "line 4, column 'c297': '1e400' is not finite"),  # read before missing
]


@pytest.mark.parametrize(("row", "message"), WIDE_CASES)
@pytest.mark.parametrize("threshold", [1, 10**9])
def test_wide_block_errors_are_the_cell_by_cell_ones(
    row: str, message: str, threshold: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same error (line and column) whether the block is read at once or not,
    whatever bad cells come after it."""
    monkeypatch.setattr(parsing, "WIDE_COLUMNS", threshold)
    width = 300
    header = ",".join(f"c{i}" for i in range(width))
    filler = ",".join(["1"] * (width - 3))
    content = f'{header}\n{filler},1,1,"b"\n{filler},{row}\n{filler},1e400,1,=b\n'.encode()
    with pytest.raises(InvalidInputError) as raised:
        parse_csv(content, ["c0"])
    assert str(raised.value).startswith(f"body.file: {message}"), str(raised.value)


def test_a_wide_file_of_numbers_and_text_is_one_hot_and_labels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Labels (digits only) stay labels in a wide block; 1.0 or +1 are not labels."""
    monkeypatch.setattr(parsing, "WIDE_COLUMNS", 1)
    monkeypatch.setattr(parsing, "_arrow_cells", lambda *args: None)  # rows from csv
    width = 300
    header = ",".join(f"c{i}" for i in range(width))
    rows = [",".join([str(r % 3), *[f"{r}.5"] * (width - 2), "ab"[r % 2]]) for r in range(4)]
    parsed = parse_csv(f"{header}\n{chr(10).join(rows)}\n".encode(), ["c0"])
    assert parsed.target_type == "labels" and parsed.y.tolist() == [0, 1, 2, 0]
    assert parsed.X.shape == (4, width - 2 + 2)
    assert parsed.feature_names is not None and parsed.feature_names[-2:] == ("c299=a", "c299=b")
    assert parsed.X[:, -2:].tolist() == [[1, 0], [0, 1], [1, 0], [0, 1]]
    for written in ("1.0", "+1"):
        content = f"{header}\n" + "\n".join([",".join([written] * width)] * 2) + "\n"
        assert parse_csv(content.encode(), ["c0"], missing="drop").target_type == "values"


def _columns() -> list[Column]:
    nan = np.nan
    return [
        Column(name="a", values=np.array([1.0, nan, 3.0, 4.0]), whole=True),
        Column(name="s", codes=np.array([1, 0, -1, 1]), categories=["red", "blue"]),
        Column(name="b", values=np.array([0.5, 2.5, nan, 2.5])),
        Column(name="y", values=np.array([0.0, 1.0, 1.0, 2.0]), whole=True),
        Column(name="t", codes=np.array([0, 1, 0, 0]), categories=["x", "w"]),
    ]


def _outcome_of(columns: Any, targets: list[str], missing: Any) -> Any:
    try:
        parsed = encode_table(columns, targets, missing=missing, locate=lambda r: f"row {r}")
    except InvalidInputError as error:
        return str(error)
    return (
        parsed.X.tolist(),
        parsed.y.tolist(),
        parsed.target_type,
        parsed.feature_names,
        parsed.classes,
        list(parsed.columns or []),
    )


@pytest.mark.parametrize("missing", MISSING_OPTIONS)
@pytest.mark.parametrize("targets", [["y"], ["t"], ["a"], ["y", "b"], ["s"], ["y", "t"]])
def test_encode_table_takes_columns_or_a_table(targets: list[str], missing: Any) -> None:
    """Column objects (the Parquet reader's) and their Table give the same dataset."""
    assert _outcome_of(_columns(), targets, missing) == _outcome_of(
        table_of(_columns()), targets, missing
    )


def test_encode_table_imputes_and_encodes_the_numeric_block() -> None:
    columns = _columns()
    columns[1] = Column(name="s", codes=np.array([1, 0, 0, 1]), categories=["red", "blue"])
    parsed = encode_table(columns, ["y"], missing="mean", locate=str)
    assert parsed.feature_names == ("a", "s=blue", "s=red", "b", "t=w", "t=x")
    assert parsed.X[:, 0].tolist() == [1.0, 8 / 3, 3.0, 4.0]
    assert parsed.X[:, 3].tolist() == [0.5, 2.5, 11 / 6, 2.5]
    assert parsed.target_type == "labels" and parsed.y.tolist() == [0, 1, 1, 2]
    frequent = encode_table(columns, ["y"], missing="most_frequent", locate=str)
    assert frequent.X[:, 0].tolist() == [1.0, 1.0, 3.0, 4.0]  # ties: the smallest
    assert frequent.X[:, 3].tolist() == [0.5, 2.5, 2.5, 2.5]
    assert list(frequent.columns or []) == [
        {"name": "a", "kind": "numeric"},
        {"name": "s", "kind": "categorical", "categories": ["blue", "red"]},
        {"name": "b", "kind": "numeric"},
        {"name": "t", "kind": "categorical", "categories": ["w", "x"]},
    ]


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("error", "row 1, column 'a': missing value (empty cell)"),
        ("mean", "row 2, column 's': missing value in a categorical column"),
        ("most_frequent", "column 'b' has no values to impute missing cells from"),
    ],
)
def test_encode_table_errors_name_the_first_cell(missing: Any, message: str) -> None:
    """Row-major order across the numeric block and the categorical columns; the first
    column (in table order) that cannot be imputed."""
    columns = _columns()
    if missing == "most_frequent":
        columns[2] = Column(name="b", values=np.full(4, np.nan))
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        encode_table(columns, ["y"], missing=missing, locate=lambda r: f"row {r}")


def test_encode_table_refuses_duplicates_and_unknown_targets() -> None:
    columns = [*_columns(), Column(name="a", values=np.zeros(4))]
    with pytest.raises(InvalidInputError, match=r"duplicate column\(s\) \['a'\]"):
        encode_table(columns, ["y"], locate=str)
    with pytest.raises(InvalidInputError, match=r"column\(s\) \['z'\] not in the columns"):
        encode_table(_columns(), ["y", "z"], locate=str)
    table = Table(
        names=["a", "b"],
        numbers=Numbers(np.zeros((2, 2)), np.arange(2), np.ones(2, dtype=bool)),
        categorical={},
    )
    with pytest.raises(InvalidInputError, match="every column is a target"):
        encode_table(table, ["a", "b"], locate=str)


def test_column_kinds_is_a_sequence_of_new_dicts() -> None:
    kinds = ColumnKinds(["a", "s", "b"], {1: ["x", "y"]})
    expected = (
        {"name": "a", "kind": "numeric"},
        {"name": "s", "kind": "categorical", "categories": ["x", "y"]},
        {"name": "b", "kind": "numeric"},
    )
    assert kinds == expected and list(kinds) == list(expected) and len(kinds) == 3
    assert kinds[-1] == expected[-1] and kinds[1:] == list(expected[1:])
    assert kinds[0] is not kinds[0]
    assert kinds != expected[:2] and kinds != "abc"
    with pytest.raises(IndexError):
        kinds[3]
