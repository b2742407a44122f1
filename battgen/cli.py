"""Command line: ``python -m battgen GROUP COMMAND ...``.

Each command group lives next to the code it drives and exposes ``register(subparsers)``;
this module only assembles them, so the CLI stays thin and imports heavy libraries lazily.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (group name, module with a ``register(subparsers)`` function, help text)
COMMAND_GROUPS: list[tuple[str, str, str]] = [
    ("sei", "battgen.sei.commands", "SEI kinetic Monte Carlo: simulate, build datasets"),
    ("data", "battgen.data.commands", "electrode data: build with CHGNet, fetch from MP, validate, export"),
    ("afm", "battgen.afm.commands", "AFM simulation: simulate one structure, build the campaign dataset"),
    ("train", "battgen.train.commands", "train the shipped models"),
    ("eval", "battgen.eval.commands", "score trained models on held-out data"),
]
# (command name, module with a ``configure(parser)`` function, help text): commands with no group
SINGLE_COMMANDS: list[tuple[str, str, str]] = [
    ("screen", "battgen.screening.commands", "property request -> generated samples and ranked candidate materials"),
    ("design", "battgen.design.commands", "property request -> new electrode structures, filtered and verified with CHGNet"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m battgen", description=__doc__.splitlines()[0])
    groups = parser.add_subparsers(dest="group", metavar="GROUP", required=True)
    for name, module_name, help_text in COMMAND_GROUPS:
        group_parser = groups.add_parser(name, help=help_text)
        commands = group_parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
        importlib.import_module(module_name).register(commands)
    for name, module_name, help_text in SINGLE_COMMANDS:
        importlib.import_module(module_name).configure(groups.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:  # bad user input: one clear line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
