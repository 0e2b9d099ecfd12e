"""seesr-cli: SeeSR (CVPR 2024) real-world image super-resolution, installable."""

__version__ = "0.1.0"

HOMEPAGE = "https://github.com/seesr-cli/seesr-cli"  # [project.urls] in pyproject.toml
DOCS_URL = f"{HOMEPAGE}/blob/main/docs/CLI.md"
