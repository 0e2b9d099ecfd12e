"""How `--help` reads: plain metavars (`INPUT...`, `DIR`, `INT`; nothing after a flag), the
glossary, and the project's URLs (what a pipx install has instead of the repository's files).

Typer's rich help shows a type after every option (`<bool>` after flags, `<list[str]>` after
arguments) and the usage line as `{inputs}...`; the command classes here replace those with
the metavars people know from other tools.
"""

from __future__ import annotations

from typer.core import TyperArgument, TyperCommand, TyperGroup

from seesr_cli import DOCS_URL, HOMEPAGE

ISSUES_URL = f"{HOMEPAGE}/issues"

WEIGHTS_SIZE = "13.8 GB"  # the manifest's sum for a run (weights/manifest.py; a test keeps them equal)

GLOSSARY = """\
Terms:
  DAPE           SeeSR's tagger (a fine-tuned RAM): it tags what the low-res
                 photo shows; the tags are each tile's prompt (`seesr tag`).
  LRE            low-resolution embedding: denoising starts from the encoded
                 input (--start lr), not from pure noise.
  latent pixels  the diffusion model's grid: 1 latent pixel = 8x8 output
                 pixels, so --tile-size 96 is a 768 px tile.

Weights: """ + WEIGHTS_SIZE + """, downloaded on first use; `seesr weights` shows where
they are and what to do next.
Docs: """ + DOCS_URL + "\n"

_TYPE_METAVARS = {"int": "INT", "int range": "INT", "float": "FLOAT", "float range": "FLOAT",
                  "str": "TEXT", "path": "PATH"}


class _Argument(TyperArgument):
    """An argument as people read it: `INPUT...` in the usage line, no type column."""

    def display_type_rich(self, ctx) -> None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        if self.nargs != 1 and not name.endswith("..."):
            name += "..."
        return name if self.required else f"[{name}]"


def plain_metavar(param, ctx) -> None:
    """Give `param` the metavar its help and usage show: none after a flag, `a|b|c` for choices,
    INT, FLOAT, TEXT, PATH for the rest, an argument's name in capitals. Idempotent."""
    if isinstance(param, TyperArgument):
        if type(param) is TyperArgument:
            param.__class__ = _Argument
        if param.metavar is None:
            param.metavar = (param.name or "").upper() + ("..." if param.nargs != 1 else "")
        return
    if param.metavar is not None:
        return
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        param.metavar = ""
        return
    display = getattr(param, "display_type", None)
    label = display(ctx).strip("<>") if display is not None else param.type.name
    param.metavar = _TYPE_METAVARS.get(label, label.upper() if "|" not in label else label)


class _PlainParams:
    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            plain_metavar(param, ctx)
        return params


class Command(_PlainParams, TyperCommand):
    """Every `seesr` command: `@app.command(cls=Command)`."""


class Group(_PlainParams, TyperGroup):
    """The `seesr` group (its own options: --version, --debug, --help)."""
