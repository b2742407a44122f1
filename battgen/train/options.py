"""Training settings dataclass <-> command line: options, value checks and the recorded command.

A settings field is declared once with :func:`option` (default, help text, bounds) and this
module derives everything else from it: the ``argparse`` option (``batch_size`` ->
``--batch-size``; ``bool`` -> a flag; ``tuple[int, ...]`` -> a comma list), the check of a value
(the same for the CLI and for Python callers), and the command line that repeats a run
exactly. Torch-free, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import types
import typing
from pathlib import Path
from typing import Any, Callable, Iterator

from battgen import paths

PROGRAM = ("python", "-m", "battgen", "train")
_MISSING = dataclasses.MISSING


def option(default: Any = _MISSING, help: str = "", *, default_factory: Callable[[], Any] | None = None,
           minimum: float | None = None, above: float | None = None, below: float | None = None,
           maximum: float | None = None,
           choices: tuple[str, ...] | None = None, cli: bool = True) -> Any:
    """A settings field: ``minimum`` / ``maximum`` (inclusive), ``above`` / ``below`` (exclusive) bound numbers;
    ``cli=False`` keeps it off the command line (set by the sub-command itself)."""
    metadata = {"help": help, "minimum": minimum, "maximum": maximum, "above": above, "below": below,
                "choices": choices, "cli": cli}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def override(config_cls: type, name: str, default: Any = _MISSING) -> Any:
    """``config_cls``'s field ``name`` for another settings class, with another ``default`` if given:
    the help and bounds stay in one place."""
    f = config_cls.__dataclass_fields__[name]
    if default is _MISSING and f.default_factory is not _MISSING:
        return dataclasses.field(default_factory=f.default_factory, metadata=f.metadata)
    return dataclasses.field(default=f.default if default is _MISSING else default, metadata=f.metadata)


def parse_channels(text: str) -> tuple[int, ...]:
    """``"32,64,128"`` -> ``(32, 64, 128)``: block widths, at least two, all positive."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 32,64,128, got {text!r}") from None
    message = check_channels(values)
    if message:
        raise argparse.ArgumentTypeError(message)
    return values


def check_channels(values: tuple[int, ...]) -> str | None:
    if len(values) < 2 or min(values) < 1:
        return f"need at least two positive block widths, got {','.join(map(str, values))}"
    return None


# --------------------------------------------------------------------------- field introspection


def _base_type(hint: Any) -> type:
    """``int | None`` -> ``int``; ``tuple[int, ...]`` -> ``tuple``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    return typing.get_origin(hint) or hint


def settings_fields(config_cls: type) -> Iterator[tuple[dataclasses.Field, type]]:
    """The command-line fields of ``config_cls`` with their base types: paths first (what a run
    reads and writes), then the rest in declaration order."""
    hints = typing.get_type_hints(config_cls)
    chosen = [(f, _base_type(hints[f.name])) for f in dataclasses.fields(config_cls) if f.metadata.get("cli", True)]
    yield from sorted(chosen, key=lambda item: item[1] is not Path)


def default_of(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not _MISSING else f.default


def check_value(f: dataclasses.Field, value: Any) -> str | None:
    """Why ``value`` is not allowed for field ``f`` (a sentence naming the field), or None."""
    if value is None:
        return None
    meta = f.metadata
    name = f.name
    if meta.get("choices") and value not in meta["choices"]:
        return f"{name} must be one of {', '.join(meta['choices'])}, got {value!r}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return f"{name} must be a finite number, got {value}"
        if meta.get("minimum") is not None and value < meta["minimum"]:
            return f"{name} must be at least {meta['minimum']}, got {value}"
        if meta.get("above") is not None and not value > meta["above"]:
            return f"{name} must be greater than {meta['above']}, got {value}"
        if meta.get("maximum") is not None and value > meta["maximum"]:
            return f"{name} must be at most {meta['maximum']}, got {value}"
        if meta.get("below") is not None and not value < meta["below"]:
            return f"{name} must be less than {meta['below']}, got {value}"
    if isinstance(value, tuple):
        return check_channels(value)
    return None


def normalise(config: Any) -> None:
    """Coerce path and tuple fields of a settings object in place, then check every value.

    Paths become absolute (a relative path means what it means from the current directory) so a
    config equals the one parsed back from its recorded command; raises ValueError on a bad value.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        kind = _base_type(hints[f.name])
        if value is not None and kind is Path:
            object.__setattr__(config, f.name, Path(value).resolve())
        elif value is not None and kind is tuple:
            object.__setattr__(config, f.name, tuple(int(v) for v in value))
        message = check_value(f, getattr(config, f.name))
        if message:
            raise ValueError(message)


# --------------------------------------------------------------------------- argparse


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _bool_flag(f: dataclasses.Field) -> str:
    """A flag switches a bool away from its default: ``progress=True`` -> ``--no-progress``."""
    return _flag(("no_" if default_of(f) else "") + f.name)


def _checked(convert: Callable[[str], Any], f: dataclasses.Field) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = convert(text)
        message = check_value(f, value)
        if message:
            raise argparse.ArgumentTypeError(message)
        return value

    parse.__name__ = convert.__name__  # argparse names the type in "invalid int value: 'x'"
    return parse


def _show(value: Any) -> str:
    if isinstance(value, Path):
        return paths.for_display(value)
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def add_options(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """One option per command-line field of ``config_cls``, with its default, type, bounds and help."""
    for f, kind in settings_fields(config_cls):
        help_text = f.metadata.get("help", "").replace("%", "%%")  # argparse formats help with %
        default = default_of(f)
        if kind is bool:
            parser.add_argument(_bool_flag(f), dest=f.name, action="store_false" if default else "store_true",
                                help=help_text)
            continue
        if default is not None:
            help_text = f"{help_text} (default {_show(default)})".lstrip()
        convert = {tuple: parse_channels, Path: Path}.get(kind) or _checked(kind, f)
        parser.add_argument(_flag(f.name), dest=f.name, type=convert, default=default,
                            choices=f.metadata.get("choices"), help=help_text)


def config_from_args(config_cls: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """The settings object for parsed ``args``; ``fixed`` sets the fields the sub-command decides."""
    values = {f.name: getattr(args, f.name) for f, _ in settings_fields(config_cls)}
    return config_cls(**values, **fixed)


def command_line(config: Any) -> str:
    """The command that repeats the run of ``config``: every option it can spell, paths as typed
    from the checkout (:func:`battgen.paths.for_display`); an option left at None is left out."""
    parts = [*PROGRAM, config.command_name()]
    for f, kind in settings_fields(type(config)):
        value = getattr(config, f.name)
        if kind is bool:
            if value != default_of(f):
                parts.append(_bool_flag(f))
        elif value is not None:
            parts += [_flag(f.name), _show(value)]
    return shlex.join(parts)
