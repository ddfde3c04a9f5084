"""Crypto Watcher: shared core (message schema, configuration, logging) for every service."""

__version__ = "0.1.0"

import contextlib
import warnings

# quixstreams (processor, bench) imports authlib's httpx integration, which warns on every start; not ours to fix.
# authlib installs an "always" filter for its warnings when imported, so ours must come after it.
with contextlib.suppress(ImportError):
    import authlib.deprecate  # type: ignore[import-untyped]  # noqa: F401
warnings.filterwarnings("ignore", message="The httpx module is deprecated")
