"""Image files: read (`read`: `source` opens, `pillow_read` and `tiff` decode into `planes`), write
(`write`; `tiff` and `codecs` where Pillow cannot), metadata, formats, and the one atomic write.

A leaf package: it imports nothing of seesr-cli's but `errors`, so batch, weights and the
report can all use it.
"""

from seesr_cli.io.formats import IMAGE_EXTENSIONS, OUTPUT_EXTENSIONS, OUTPUT_FORMATS, output_format_for
from seesr_cli.io.metadata import SOFTWARE, read_metadata
from seesr_cli.io.read import DEFAULT_MAX_PIXELS, LoadedImage, load_image
from seesr_cli.io.write import save_image

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "OUTPUT_EXTENSIONS", "OUTPUT_FORMATS", "SOFTWARE",
           "LoadedImage", "load_image", "output_format_for", "read_metadata", "save_image"]
