"""Weights in one place: the manifest, Hub and local lookup, verification, conversion.

Data flows one way: the manifest names each part; `resolve` finds it in the Hub cache
(`hub`, downloading what is missing) or in an official-layout folder; `verify` checks
its sha256 before anything is unpickled (`pickles`); `compact` converts RAM + DAPE.pth
once (`convert`). Nothing here prints: pass `progress` to see events.
"""

from seesr_cli.weights.cache import CacheDirs, cache_dirs, is_offline
from seesr_cli.weights.hub import Progress, WeightsEvent
from seesr_cli.weights.manifest import DEFAULT_SD2_REPO, SOURCES, Source, sources
from seesr_cli.weights.resolve import WeightPaths, download_all, resolve_dape, resolve_weights
from seesr_cli.weights.status import WeightStatus, describe_weights
from seesr_cli.weights.verify import sha256_file

__all__ = ["DEFAULT_SD2_REPO", "SOURCES", "CacheDirs", "Progress", "Source", "WeightPaths", "WeightStatus",
           "WeightsEvent", "cache_dirs", "describe_weights", "download_all", "is_offline", "resolve_dape",
           "resolve_weights", "sha256_file", "sources"]
