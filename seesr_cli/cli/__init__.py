"""The `seesr` command: `app` (Typer) and `main` (the console-script entry point).

Importing the command modules registers them on `app`, in the order `seesr --help` lists them.
"""
# ruff: noqa: I001, F401

from seesr_cli.cli import upscale
from seesr_cli.cli import tag
from seesr_cli.cli import weights
from seesr_cli.cli import report
from seesr_cli.cli.app import app, main

__all__ = ["app", "main"]
