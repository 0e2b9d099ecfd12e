"""seesr-cli: SeeSR (CVPR 2024) real-world image super-resolution, installable."""

__version__ = "0.1.0"
