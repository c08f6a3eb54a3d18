"""``params.yaml`` -> typed, frozen config objects.

Each stage declares a dataclass for its own block and reads it with :func:`stage_config`.
Unknown keys, missing required keys and wrongly typed values are errors that name the key
(``train_teacher.lr: expected float, got str 'fast'``). Overrides use dotted paths, as
``dvc exp run -S`` and spaCy's CLI do: ``--set train_teacher.lr=3e-4``.

Constraints live where the keys are declared, as :data:`typing.Annotated` markers that
:func:`_coerce` checks: ``batch_size: Positive``, ``workers: NonNegative``,
``val_fraction: Fraction``, ``rotate: Annotated[float, InRange(0, 180)]``,
``strides: Annotated[tuple[Positive, ...], NonEmpty()]``. Every float must be finite (a NaN or
an infinity is never a valid setting), and strings and paths must be valid UTF-8. A dataclass
that code also builds directly (not only from ``params.yaml``) calls :func:`check_fields` in its
``__post_init__`` to get the same checks. ``__post_init__`` keeps only the checks that relate
several keys (``p`` a multiple of ``s``) or need the library (known backbones).
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import math
import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from .errors import PipelineError
from .files import read_text

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(PipelineError):
    pass


# --- constraint markers (used inside typing.Annotated) -----------------------------------

class Constraint:
    """A condition on a coerced value; ``describe()`` completes "expected <type> ..."."""

    def ok(self, value) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def check(self, value, where: str, tp) -> None:
        if not self.ok(value):
            shown = list(value) if isinstance(value, tuple) else value
            raise ConfigError(f"{where}: expected {_type_name(tp)} {self.describe()}, got {shown!r}")


@dataclasses.dataclass(frozen=True)
class InRange(Constraint):
    """``low <= value <= high``; either end may be open (excluded) or left out (infinite)."""
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def ok(self, value) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return bool(above and below)

    def describe(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {self.low}"
        if self.low == -math.inf:
            return f"{'<' if self.high_open else '<='} {self.high}"
        return (f"in {'(' if self.low_open else '['}{self.low}, "
                f"{self.high}{')' if self.high_open else ']'}")


def AtLeast(low: float) -> InRange:  # noqa: N802 (a marker, read as a type annotation)
    """``value >= low``."""
    return InRange(low)


def Above(low: float) -> InRange:  # noqa: N802
    """``value > low``."""
    return InRange(low, low_open=True)


@dataclasses.dataclass(frozen=True)
class NonEmpty(Constraint):
    """A list (tuple) with at least one item."""

    def ok(self, value) -> bool:
        return len(value) > 0

    def describe(self) -> str:
        return "with at least one item"


@dataclasses.dataclass(frozen=True)
class FromPaths:
    """Marker of a key whose value, when its block does not set it, is ``paths.<name>`` of the
    params file: every file that two stages (or dvc.yaml and a stage) share is written once, in
    the ``paths`` block. A list-typed key gets the one path as a one-item list; an optional key
    is None when the params file has no such path. A dotted name reads into a mapping of the
    ``paths`` block (``teachers.base``: ``paths.teachers.base``)."""
    name: str


@dataclasses.dataclass(frozen=True)
class FromBlock:
    """Marker of a key whose value, when its block does not set it, is the params file's
    top-level block ``name``: settings that several stages must share (the ``views`` that every
    teacher labels and every student replays), written once."""
    name: str


SHARED_BLOCKS = ("paths", "views")   # top-level blocks that are no stage's own


def _paths_value(paths: dict, name: str):
    """``paths.<name>`` with a dotted name read into nested mappings; KeyError if absent."""
    value = paths
    for part in name.split("."):
        if not isinstance(value, dict):
            raise KeyError(name)
        value = value[part]
    return value


def fill_shared(cls, data: Any, params: dict, where: str) -> Any:
    """``data`` (a block of ``params``) with the keys it does not set taken from the shared
    blocks: :class:`FromPaths` keys from ``paths``, :class:`FromBlock` keys from their block."""
    if not isinstance(data, dict):
        return data
    paths = params.get("paths") or {}
    if not isinstance(paths, dict):
        raise ConfigError("paths: expected a mapping of names to paths")
    filled = dict(data)
    for name, tp in _hints(cls).items():
        if name in filled:
            continue
        markers = getattr(tp, "__metadata__", ())
        shared = next((m for m in markers if isinstance(m, FromBlock)), None)
        if shared is not None:
            if shared.name in params:   # else the key's default (or "required key is missing")
                filled[name] = params[shared.name]
            continue
        marker = next((m for m in markers if isinstance(m, FromPaths)), None)
        if marker is None:
            continue
        base = typing.get_args(tp)[0]
        try:
            value = _paths_value(paths, marker.name)
        except KeyError:
            if type(None) in typing.get_args(base):  # optional: absent means "none"
                filled[name] = None
                continue
            raise ConfigError(f"{where}.{name}: not set, and the params file has no paths.{marker.name}") from None
        is_list = typing.get_origin(base) in (list, tuple) or any(
            typing.get_origin(a) in (list, tuple) for a in typing.get_args(base))
        filled[name] = [value] if is_list and isinstance(value, str) else value
    return filled


Positive = Annotated[int, AtLeast(1)]                          # sizes and counts
NonNegative = Annotated[int, AtLeast(0)]                       # worker counts (0 = none / all), seeds
PositiveFloat = Annotated[float, Above(0)]                     # learning rates, scales
NonNegativeFloat = Annotated[float, AtLeast(0)]                # loss weights
Fraction = Annotated[float, InRange(0, 1, high_open=True)]     # a share of the samples, < 1
Probability = Annotated[float, InRange(0, 1)]                  # thresholds, IoU


def yaml_problem(exc: Exception) -> str:
    """A YAML parser's error (PyYAML's or ruamel's) on one line: where and what."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is None or problem is None:
        return " ".join(str(exc).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict:
    path = Path(path)
    text = read_text(path, ConfigError, "params file not found")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({yaml_problem(exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of stage blocks")
    return data


def _utf8_error(text: str) -> str | None:
    """None if ``text`` is valid UTF-8 text, else how to show it in an error message: the
    bytes of a command-line argument that is not UTF-8 (Python holds them as surrogate
    escapes), or the escaped string."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError:
        pass
    try:
        return repr(os.fsencode(text))
    except UnicodeError:
        return ascii(text)


def apply_overrides(params: dict, overrides: typing.Iterable[str]) -> dict:
    """Apply ``block.key=value`` strings (value parsed as YAML) to a copy of ``params``.
    The block must be one of the file's; a key that the block does not know is an error
    when the block is parsed (:func:`parse_block`)."""
    out = copy.deepcopy(params)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.path=value")
        dotted, raw = item.split("=", 1)
        dotted = dotted.strip()
        if _utf8_error(dotted) is not None:
            raise ConfigError(f"override: the key {_utf8_error(dotted)} is not valid UTF-8")
        keys = dotted.split(".")
        if not all(keys):
            raise ConfigError(f"override {item!r}: expected block.key=value")
        if keys[0] not in out:
            raise ConfigError(f"{keys[0]}: unknown block in --set {item!r} "
                              f"(known: {', '.join(map(str, out))})")
        if _utf8_error(raw) is not None:
            raise ConfigError(f"{dotted}: expected UTF-8 text, got {_utf8_error(raw)}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{dotted}: the --set value {raw!r} is not valid YAML ({reason})") from None
        node = out
        for depth, key in enumerate(keys[:-1]):
            if depth == 0 and node.get(key) is None:   # an empty block in the file
                node[key] = {}
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {key} is not a block")
        node[keys[-1]] = value
    return out


def _type_name(tp) -> str:
    if typing.get_origin(tp) in (list, tuple):
        return "a list"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _text(value: str, where: str, what: str) -> str:
    bad = _utf8_error(value)
    if bad is not None:
        raise ConfigError(f"{where}: expected {what} that is valid UTF-8, got {bad}")
    return value


def _coerce(value: Any, tp, where: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Annotated:
        base, *markers = args
        value = _coerce(value, base, where)
        for marker in markers:
            if isinstance(marker, Constraint):
                marker.check(value, where, base)
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        key_tp, val_tp = args or (Any, Any)
        return {k: _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):  # an instance built in code (check_fields)
            return value
        return parse_block(tp, value, where)
    if tp is float:
        number = value
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ConfigError(f"{where}: expected float, got {type(value).__name__} {value!r}")
        try:
            number = float(number)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite float, got {value!r}")
        return number
    if tp is int or tp is bool:
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected str, got {type(value).__name__} {value!r}")
        return _text(value, where, "a string")
    if tp is Path:
        if isinstance(value, Path):  # built in code (check_fields)
            value = str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a path string, got {type(value).__name__} {value!r}")
        if not value or "\0" in value:
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(_text(value, where, "a path"))
    raise ConfigError(f"{where}: unsupported config type {_type_name(tp)}")


def parse_block(cls, data: Any, where: str):
    """Build dataclass ``cls`` from a mapping, checking every key and type."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, field in fields.items():
        key_where = f"{where}.{name}"
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], key_where)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key_where}: required key is missing")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        # a check of __post_init__ that names its key ("p: ...") -> "block.p: ..."
        message = str(exc)
        sep = "." if message.split(":", 1)[0] in fields else ": "
        raise ConfigError(f"{where}{sep}{message}") from None


@functools.lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return typing.get_type_hints(cls, include_extras=True)


def check_fields(obj, where: str | None = None) -> None:
    """Check a dataclass instance's values against its declared types and markers (the
    checks :func:`parse_block` makes), for configs that code builds directly; call it from
    ``__post_init__``. Raises :class:`ConfigError` (a ValueError) naming ``Class.key``."""
    where = where or type(obj).__name__
    hints = _hints(type(obj))
    for field in dataclasses.fields(obj):
        _coerce(getattr(obj, field.name), hints[field.name], f"{where}.{field.name}")


def stage_config(block: str, cls, params_path: str | Path = DEFAULT_PARAMS,
                 overrides: typing.Iterable[str] = ()):
    """Read block ``block`` of the params file into ``cls`` (only that block, and the
    ``paths`` its :class:`FromPaths` keys default to, are read)."""
    params = apply_overrides(load_params(params_path), overrides)
    if block not in params:
        raise ConfigError(f"{params_path}: no '{block}' block (stages: {', '.join(params)})")
    return parse_block(cls, fill_shared(cls, params[block], params, block), block)


def as_dict(config) -> dict:
    """Plain, YAML/JSON-friendly dict of a config (paths as strings)."""
    def plain(v):
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}
