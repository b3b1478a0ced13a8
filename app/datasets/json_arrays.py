"""Read a JSON object body whose big fields are numeric arrays, straight into NumPy buffers.

``{"name": "d", "X": [[0, 1], [1, 0]], "y": [1, 0]}`` is read token by token with
ijson's C backend (yajl2_c; nothing else is fast enough, so importing this module
fails without it). The numbers of the array fields (``X``, ``y``) go straight into
``array('d')`` buffers, never into Python lists; the other, small fields are built
as Python values (at most :data:`SMALL_FIELD_TOKENS` tokens each) for the pydantic
models to validate. Limits are checked while the numbers arrive (cells, rows), so a
body over a limit is refused when the limit is crossed, after reading no more than
that. Every error is an :class:`~app.errors.InvalidInputError` whose ``loc`` is the
place in the body (``["body", "X", 3, 1]``).

Parse in a worker thread: the parser holds the GIL only for short calls (one
token at a time), so the event loop keeps answering meanwhile.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypeVar

import ijson
import numpy as np
from ijson.common import JSONError, ObjectBuilder
from numpy.typing import NDArray
from pydantic import BaseModel, ValidationError

from app.errors import InvalidInputError, Loc

YAJL = ijson.get_backend("yajl2_c")
"""The C backend (about 10x the pure-Python one); an ImportError here means ijson was
installed without its compiled extension."""

READ_BYTES = 64 * 1024
"""Bytes handed to the parser per read."""

SMALL_FIELD_TOKENS = 1000
"""Most JSON tokens in the value of a field that is not a numeric array (``name``...)."""

MAX_LABEL = 2**31 - 1
"""Largest integer class label."""

Event = tuple[str, Any]


@dataclass(frozen=True)
class ArraySpec:
    """How one numeric array field is read.

    Attributes
    ----------
    one_d : bool
        Whether a 1-D list of numbers is accepted (else only rows: lists of numbers).
    what : str
        What one entry of a row is, for messages (``feature``, ``target``, ``value``).
    max_rows : int or None
        Refuse the body as soon as the array has more rows.
    rows_message : str
        The reason given when ``max_rows`` is crossed (``{max_rows}`` is filled in).
    placeholder : Any
        A value of the field that its pydantic model accepts; it stands in for the
        array when the small fields are validated.
    """

    one_d: bool = False
    what: str = "value"
    max_rows: int | None = None
    rows_message: str = "more than {max_rows} rows"
    placeholder: Any = field(default_factory=list)


@dataclass
class CellBudget:
    """Cells (numbers) all array fields together may hold; refused when crossed."""

    max_cells: int
    message: str
    loc: Loc = ("body",)
    used: int = 0

    def refuse(self) -> InvalidInputError:
        """The error to raise when the budget is crossed."""
        return InvalidInputError(self.loc, self.message.format(max_cells=self.max_cells))


@dataclass(frozen=True)
class NumericArray:
    """One array field as read: float64 values in row-major order.

    Attributes
    ----------
    values : ndarray of shape (rows,) or (rows, width)
        1-D when the field was a list of numbers.
    all_labels : bool
        1-D only: every entry was a JSON integer in ``0 .. MAX_LABEL``.
    """

    values: NDArray[np.float64]
    all_labels: bool

    @property
    def rows(self) -> int:
        """Number of rows (entries of a 1-D list)."""
        return int(self.values.shape[0])


@dataclass(frozen=True)
class ParsedObject:
    """The body: its numeric arrays, and every other field as a Python value."""

    arrays: dict[str, NumericArray]
    fields: dict[str, Any]


def parse_object(
    file: BinaryIO, specs: Mapping[str, ArraySpec], budget: CellBudget | None = None
) -> ParsedObject:
    """Read a JSON object from ``file``; the keys of ``specs`` are its numeric arrays.

    Parameters
    ----------
    file : binary file
        The body, read from its current position to the end.
    specs : mapping of str to ArraySpec
        The array fields. A key of ``specs`` whose value is not an array is returned
        in ``fields`` (its model then reports the wrong type).
    budget : CellBudget, optional
        A limit on the numbers of all array fields together.

    Raises
    ------
    InvalidInputError
        Invalid JSON, a body that is not an object, a key given twice, an entry that
        is not a number, ragged rows, non-finite numbers, or a limit crossed.
    """
    events: Iterator[Event] = YAJL.basic_parse(file, use_float=True, buf_size=READ_BYTES)
    reader = _ObjectReader(events, specs, budget)
    try:
        return reader.read()
    except JSONError as exc:
        raise syntax_error(exc, reader.loc) from None


class _ObjectReader:
    """The top level of :func:`parse_object`; ``loc`` is where it is, for errors."""

    def __init__(
        self, events: Iterator[Event], specs: Mapping[str, ArraySpec], budget: CellBudget | None
    ) -> None:
        self.events = events
        self.specs = specs
        self.budget = budget
        self.loc: Loc = ("body",)

    def read(self) -> ParsedObject:
        first = next(self.events, None)
        if first is None or first[0] != "start_map":
            raise InvalidInputError(
                ("body",), "must be a JSON object (Content-Type: application/json)"
            )
        arrays: dict[str, NumericArray] = {}
        fields: dict[str, Any] = {}
        for event, key in self.events:
            if event == "end_map":
                break
            self.loc = ("body", key)
            if key in arrays or key in fields:
                raise InvalidInputError(self.loc, "given twice; give each field once")
            event, value = next(self.events)
            spec = self.specs.get(key)
            if spec is not None and event == "start_array":
                arrays[key] = read_array(self.events, key, spec, self.budget)
            else:
                fields[key] = _small_value(self.events, event, value, self.loc)
        self.loc = ("body",)
        for _ in self.events:  # yajl checks that nothing but whitespace follows
            pass
        return ParsedObject(arrays=arrays, fields=fields)


def _small_value(events: Iterator[Event], event: str, value: Any, loc: Loc) -> Any:
    """Build the value that starts with ``(event, value)``, of at most SMALL_FIELD_TOKENS tokens."""
    builder = ObjectBuilder()
    builder.event(event, value)
    depth = 1 if event in ("start_map", "start_array") else 0
    tokens = 1
    while depth:
        event, value = next(events)
        tokens += 1
        if tokens > SMALL_FIELD_TOKENS:
            raise InvalidInputError(loc, f"too large: at most {SMALL_FIELD_TOKENS} JSON values")
        if event in ("start_map", "start_array"):
            depth += 1
        elif event in ("end_map", "end_array"):
            depth -= 1
        builder.event(event, value)
    return builder.value


def _describe(event: str, value: Any) -> str:
    if event == "start_map":
        return "an object"
    if event == "start_array":
        return "a list"
    return repr(value)


def read_array(
    events: Iterator[Event], name: str, spec: ArraySpec, budget: CellBudget | None
) -> NumericArray:
    """Read the array whose ``start_array`` event was just consumed.

    The hot loop of the module: one iteration per JSON token, locals only.
    """
    buffer = array("d")
    append = buffer.append
    rows = 0  # rows (or entries of a 1-D list) started
    width = -1  # entries of row 0
    col = 0  # entries of the current row so far
    in_row = False
    one_d: bool | None = None  # decided by the first entry
    labels = True
    max_rows = spec.max_rows if spec.max_rows is not None else -1
    left = budget.max_cells - budget.used if budget is not None else -1  # -1: no budget
    row_cap = left
    try:
        for event, value in events:
            if event == "number":
                if in_row:
                    col += 1
                    if col == row_cap + 1 and row_cap >= 0:
                        raise _over_budget(budget)
                    append(value)
                    continue
                if one_d is None:
                    if not spec.one_d:
                        raise InvalidInputError(
                            ("body", name, rows),
                            f"must be a list of numbers (one sample's {spec.what}s), got {value!r}",
                        )
                    one_d = True
                elif not one_d:
                    raise InvalidInputError(("body", name, rows), "mixes lists and numbers")
                rows += 1
                if rows == left + 1 and left >= 0:
                    raise _over_budget(budget)
                if labels and not (type(value) is int and 0 <= value <= MAX_LABEL):
                    labels = False
                append(value)
            elif event == "start_array":
                if in_row:
                    raise InvalidInputError(
                        ("body", name, rows - 1, col), "must be a number, got a list"
                    )
                if one_d:
                    raise InvalidInputError(("body", name, rows), "mixes lists and numbers")
                one_d = False
                rows += 1
                if rows == max_rows + 1 and max_rows >= 0:
                    raise InvalidInputError(
                        ("body", name), spec.rows_message.format(max_rows=max_rows)
                    )
                in_row = True
                col = 0
            elif event == "end_array":
                if not in_row:
                    break
                in_row = False
                if width < 0:
                    width = col
                    if width == 0:
                        raise InvalidInputError(
                            ("body", name, 0), f"a sample must have at least one {spec.what}"
                        )
                elif col != width:
                    raise InvalidInputError(
                        ("body", name, rows - 1),
                        f"ragged rows: row {rows - 1} has {col} values, row 0 has {width}",
                    )
                if left >= 0:
                    left -= col
                    row_cap = left
            else:
                loc: Loc = ("body", name, rows - 1, col) if in_row else ("body", name, rows)
                raise InvalidInputError(loc, f"must be a number, got {_describe(event, value)}")
    except JSONError as exc:
        where: Loc = ("body", name, rows - 1, col) if in_row else ("body", name, rows)
        raise syntax_error(exc, where) from None
    if budget is not None:
        budget.used += len(buffer)
    values = np.frombuffer(buffer, dtype=np.float64)
    if one_d is False:
        values = values.reshape(rows, width)
    _check_finite(values, name)
    return NumericArray(values=values, all_labels=bool(one_d) and labels)


def _structural_bounds(file: BinaryIO) -> tuple[int, int]:
    """Upper bounds on the numbers and on the arrays in a JSON text, counted at memory
    speed: each number is followed by ``,``, ``]``, ``}`` or the end; each array ends
    with ``]``."""
    numbers, arrays = 1, 0
    while chunk := file.read(1 << 20):
        closing = chunk.count(b"]")
        numbers += chunk.count(b",") + closing + chunk.count(b"}")
        arrays += closing
    return numbers, arrays


def _count(file: BinaryIO, specs: Mapping[str, ArraySpec], budget: CellBudget | None) -> None:
    """Raise the refusal of a limit (``budget``'s cells, a spec's ``max_rows``) once the
    array fields cross it; store nothing. Syntax errors are left for the real pass."""
    events: Iterator[Event] = YAJL.basic_parse(file, use_float=True, buf_size=READ_BYTES)
    cells_left = budget.max_cells - budget.used if budget is not None else -1
    rows_left = -1
    name = ""
    spec: ArraySpec | None = None
    depth = 0
    try:
        for event, value in events:
            if event == "number":
                if spec is not None and cells_left >= 0:
                    cells_left -= 1
                    if cells_left < 0:
                        raise _over_budget(budget)
            elif event == "start_array" or event == "start_map":
                depth += 1
                if depth == 3 and spec is not None and rows_left >= 0:
                    rows_left -= 1
                    if rows_left < 0:
                        raise InvalidInputError(
                            ("body", name), spec.rows_message.format(max_rows=spec.max_rows)
                        )
            elif event == "end_array" or event == "end_map":
                depth -= 1
                if depth == 1:
                    spec = None
            elif event == "map_key" and depth == 1:
                name, spec = value, specs.get(value)
                rows_left = -1 if spec is None or spec.max_rows is None else spec.max_rows
    except JSONError:
        return


def refuse_early(
    file: BinaryIO, specs: Mapping[str, ArraySpec], budget: CellBudget | None = None
) -> None:
    """Refuse a body over a limit (``budget``'s cells, a spec's ``max_rows``) before any
    number is stored: a body that may cross one (by :func:`_structural_bounds`) is
    counted first, so an over-limit body costs the parser's buffers, not arrays of up to
    the limit. Bodies well under the limits are not read twice. The file is left at
    its start."""
    start = file.tell()
    numbers, arrays = _structural_bounds(file)
    over_cells = budget is not None and numbers > budget.max_cells - budget.used
    max_rows = [spec.max_rows for spec in specs.values() if spec.max_rows is not None]
    over_rows = bool(max_rows) and arrays > min(max_rows)
    if over_cells or over_rows:
        file.seek(start)
        _count(file, specs, budget)
    file.seek(start)


def _over_budget(budget: CellBudget | None) -> InvalidInputError:
    assert budget is not None
    return budget.refuse()


def _check_finite(values: NDArray[np.float64], name: str) -> None:
    """``1e999`` parses as infinity; JSON has no other way to write a non-finite number."""
    finite = np.isfinite(values)
    if finite.all():
        return
    index = np.unravel_index(int(np.argmin(finite)), values.shape)
    place = tuple(int(i) for i in index)
    raise InvalidInputError(("body", name, *place), f"must be finite, got {float(values[index])!r}")


_NON_FINITE = re.compile(r"-?(?:NaN|Infinity)")
_ARROW = "(right here) ------^"


def _token_near_error(message: str) -> str:
    """The text around the position yajl's verbose message points at ('' if none)."""
    lines = message.splitlines()
    for index, line in enumerate(lines[1:], start=1):
        if line.endswith(_ARROW):
            column = len(line) - 1
            text = lines[index - 1]
            return text[max(0, column - 10) : column + 10]
    return ""


def syntax_error(exc: JSONError, loc: Loc) -> InvalidInputError:
    """A 422 for what yajl refused, at ``loc`` (the place the parser had reached).

    Python's ``json`` (and so this API before) reads ``NaN`` and ``Infinity``;
    they are reported as non-finite numbers, as before. Integers beyond 64 bits,
    which yajl cannot hold, are refused with what to write instead.
    """
    message = str(exc)
    first = message.splitlines()[0] if message else type(exc).__name__
    near = _token_near_error(message)
    found = _NON_FINITE.search(near)
    if found is not None:
        return InvalidInputError(loc, f"must be finite, got {found.group(0)}")
    if "floating point) overflow" in first:
        return InvalidInputError(loc, "must be finite, got a number beyond the float64 range")
    if "integer overflow" in first:
        return InvalidInputError(
            loc,
            "integer out of range: integers must fit in 64 bits (-2**63 .. 2**63-1); "
            "write a larger number as a float, e.g. 1e20 (it must be finite)",
        )
    if "premature EOF" in first:
        return InvalidInputError(loc, "invalid JSON: the body ends before the JSON does")
    return InvalidInputError(loc, f"invalid JSON: {first}")


M = TypeVar("M", bound=BaseModel)


def validate_fields(model: type[M], body: ParsedObject, specs: Mapping[str, ArraySpec]) -> M:
    """Validate the small fields of ``body`` with ``model``; each array read stands
    in as its spec's placeholder.

    Raises
    ------
    fastapi.exceptions.RequestValidationError
        As FastAPI reports a body that fails its model (``loc`` starts with ``body``).
    """
    # Imported here: the workers import this module (for its array readers) and never
    # call this, and FastAPI is 0.17 s of every worker process's start.
    from fastapi.exceptions import RequestValidationError

    data = {**body.fields, **{name: specs[name].placeholder for name in body.arrays}}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from None
