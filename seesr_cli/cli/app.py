"""The `seesr` Typer application: the root options, the entry point and the error table applied.

Each command (`upscale`, `tag`, `weights`) lives in its own module and registers itself on
`app`; it parses its options, builds settings, calls the library and reports. Results go to
stdout, progress, errors and hints to stderr. Heavy imports (torch, the models) happen only
in the commands that need them, so `--help`, `--version` and `--dry-run` answer at once.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from seesr_cli import __version__
from seesr_cli.cli.errors import exit_code
from seesr_cli.cli.help import GLOSSARY, Group


def debug_requested(argv: Sequence[str]) -> bool:
    """`--debug` anywhere in the arguments (before they are parsed), or SEESR_DEBUG=1."""
    return "--debug" in argv or os.environ.get("SEESR_DEBUG", "") not in ("", "0")


def debug_enabled(ctx: typer.Context) -> bool:
    """The parsed root `--debug`, or SEESR_DEBUG=1."""
    return bool(ctx.find_root().params.get("debug")) or debug_requested(())


class _SeesrGroup(Group):
    """Runs every command through the error table (also under Typer's CliRunner)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra) -> int:
        argv = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(argv, prog_name or "seesr", complete_var, standalone_mode=False, **extra)
        except BaseException as exc:  # noqa: BLE001 - the one place errors become exit codes
            code = exit_code(exc, debug_requested(argv))
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(cls=_SeesrGroup, name="seesr", add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]},
                  help="SeeSR (CVPR 2024) semantics-aware real-world image super-resolution.\n\n" + GLOSSARY)


def main() -> None:
    """Console-script entry point (`seesr`, `python -m seesr_cli`)."""
    app()


def print_json(data: dict) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"seesr-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """SeeSR super-resolution: `seesr upscale photos/`, `seesr tag image.png`, `seesr download`."""
