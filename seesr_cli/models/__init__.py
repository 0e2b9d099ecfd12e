"""The SeeSR networks: `from seesr_cli.models import SeeSRUNet, SeeSRControlNet, DAPE`."""

from seesr_cli.models.dape import DAPE

__all__ = ["DAPE", "SeeSRControlNet", "SeeSRUNet"]


def __getattr__(name: str):
    # The diffusion models import diffusers; DAPE-only users (`seesr tag`) skip that cost.
    if name == "SeeSRUNet":
        from seesr_cli.models.unet import SeeSRUNet

        return SeeSRUNet
    if name == "SeeSRControlNet":
        from seesr_cli.models.controlnet import SeeSRControlNet

        return SeeSRControlNet
    raise AttributeError(name)
