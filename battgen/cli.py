"""BattGen command line: battgen GROUP COMMAND [options] (also python -m battgen ...).

One registration pattern: every command module lives next to the code it drives and exposes
``register(subparsers)``, which adds its commands to the sub-parsers it is handed — a group's
(``battgen sei simulate``) or the top level's (``battgen screen``). This module only assembles
them, so the CLI stays thin and heavy libraries are imported inside each command's handler.

Naming rules every command follows: ``--dask-scheduler`` is a Dask cluster address, ``--sampler``
a diffusion sampler, ``--views`` the AFM views kept per material, ``--json`` machine-readable
output on stdout (progress and warnings on stderr). A library ``ValueError`` is bad input: one
line ``error: ...`` and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (group name or None for top-level commands, module with ``register(subparsers)``, help text)
COMMANDS: list[tuple[str | None, str, str]] = [
    ("sei", "battgen.sei.commands", "SEI kinetic Monte Carlo: simulate, build datasets"),
    ("data", "battgen.data.commands", "electrode data: build with CHGNet, fetch from MP, validate, export"),
    ("afm", "battgen.afm.commands", "AFM simulation: simulate one structure, build the campaign dataset"),
    ("train", "battgen.train.commands", "train the shipped models"),
    ("eval", "battgen.eval.commands", "score trained models on held-out data"),
    (None, "battgen.screening.commands", "screen: property request -> generated samples and ranked candidates"),
    (None, "battgen.design.commands", "design: property request -> new electrode structures verified with CHGNet"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="battgen", description=__doc__.splitlines()[0])
    top = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    for group, module_name, help_text in COMMANDS:
        subparsers = top
        if group is not None:
            group_parser = top.add_parser(group, help=help_text, description=help_text)
            subparsers = group_parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Before torch loads: the thread policy only takes effect if set first.
    from battgen.runtime import configure_threads

    configure_threads()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:  # bad user input: one clear line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
