"""Weights in one place: the manifest, Hub and local lookup, verification, conversion.

Data flows one way: the manifest names each part; `resolve` finds it in the Hub cache
(`hub`, downloading what is missing) or in an official-layout folder; `verify` checks
its sha256 before anything is unpickled (`pickles`); `compact` converts RAM + DAPE.pth
once (`convert`). Nothing here prints: pass `progress` to see events.

Names are imported on first use (PEP 562): `seesr upscale --dry-run` and `--help` import
this package through `batch` and must not pay for torch.
"""

from importlib import import_module

_HOMES = {
    "CacheDirs": "cache", "cache_dirs": "cache", "is_offline": "cache",
    "Progress": "hub", "WeightsEvent": "hub",
    "DEFAULT_SD2_REPO": "manifest", "SOURCES": "manifest", "Source": "manifest", "sources": "manifest",
    "WeightPaths": "resolve", "download_all": "resolve", "resolve_dape": "resolve", "resolve_weights": "resolve",
    "WeightStatus": "status", "describe_weights": "status",
    "sha256_file": "verify",
}
__all__ = [
    "DEFAULT_SD2_REPO",
    "SOURCES",
    "CacheDirs",
    "Progress",
    "Source",
    "WeightPaths",
    "WeightStatus",
    "WeightsEvent",
    "cache_dirs",
    "describe_weights",
    "download_all",
    "is_offline",
    "resolve_dape",
    "resolve_weights",
    "sha256_file",
    "sources",
]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
