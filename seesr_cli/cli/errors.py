"""The one error table: every error becomes one message on stderr and an exit code here.

0 all done, 1 some inputs failed (or weights missing), 2 usage, 130 interrupted. Tracebacks
only with `--debug` (or SEESR_DEBUG=1).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

import typer
from rich.console import Console

from seesr_cli.cli.help import ISSUES_URL
from seesr_cli.cli.tables import note_line
from seesr_cli.errors import Cancelled, InputImageError, InternalError, SeesrError

RESUME_HINT = "re-run the same command to resume (finished files are skipped)"
BUG_HINT = f"this is a bug in seesr-cli; run `seesr --debug ...` for the traceback and report it at {ISSUES_URL}"

# click's exception base (Typer vendors its own copy of click in recent releases).
ClickError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _show_click(exc) -> int:
    exc.show()  # "Usage: ..." and the reason, on stderr
    return exc.exit_code


def _say(message: str, code: int | None = None) -> Callable[[BaseException], int]:
    def render(exc: BaseException) -> int:
        note_line(Console(stderr=True), message.format(exc=exc))
        return code if code is not None else getattr(exc, "exit_code", 1)
    return render


_ERRORS: tuple[tuple[type[BaseException], Callable[[BaseException], int]], ...] = (
    (ClickError, _show_click),  # Typer's own usage errors: exit 2
    (typer.Abort, _say("aborted", 1)),
    (KeyboardInterrupt, _say(f"interrupted: {RESUME_HINT}", 130)),
    (Cancelled, _say(f"interrupted: {RESUME_HINT}", 130)),
    (InputImageError, _say("error: {exc}", 1)),
    (InternalError, _say(f"error: internal error: {{exc}} ({BUG_HINT})", 1)),
    (SeesrError, _say("error: {exc}")),  # UsageError 2, WeightsError & co. 1, Cancelled 130
    (OSError, _say("error: {exc}", 1)),
    (Exception, _say(f"error: internal error: {{exc!r}} ({BUG_HINT})", 1)),
)


def exit_code(exc: BaseException, debug: bool) -> int:
    """Report `exc` (its traceback first with `debug`) and return the process's exit code."""
    if debug and not isinstance(exc, ClickError):
        traceback.print_exception(exc, file=sys.stderr)
    for kind, render in _ERRORS:
        if isinstance(exc, kind):
            return render(exc)
    raise exc  # SystemExit and friends
