"""The upscale pipeline: loading, the stages of one image (`seesr`), tiled VAE, DAPE tagging.

`from seesr_cli.pipeline import SeeSRPipeline`: `SeeSRPipeline.from_pretrained(paths)`, then
`pipe.upscale(image, UpscaleSettings(...)) -> UpscaleResult`.
"""

from seesr_cli.pipeline.seesr import ProgressEvent, SeeSRPipeline, UpscaleResult

__all__ = ["ProgressEvent", "SeeSRPipeline", "UpscaleResult"]
