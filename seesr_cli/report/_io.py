"""The one place the report imports from the rest of seesr-cli: when a module moves, only this changes."""

from seesr_cli.errors import OutputWriteError, SeesrError  # noqa: F401  (re-exported for the report)
from seesr_cli.io import load_image, read_metadata  # noqa: F401
from seesr_cli.io.atomic import atomic_write  # noqa: F401  (the one atomic write)
