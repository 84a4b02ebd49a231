"""What goes over the wire besides the routes: gzip and the static files' cache headers.

A phone on the Status page receives every pack's view at each poll; compressed, the repeated
JSON shrinks to a fraction. The event stream is compressed too: each event is flushed on its own
(zlib's sync flush in Starlette's GZip middleware), so it still arrives at once.
"""

from __future__ import annotations

import os

from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES
from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

# everything Starlette leaves alone (images, archives) except the event stream
GZIP_EXCLUDED = tuple(t for t in DEFAULT_EXCLUDED_CONTENT_TYPES if t != "text/event-stream")
GZIP_MIN_BYTES = 500  # smaller answers gain nothing from the gzip header
GZIP_LEVEL = 6  # zlib's default: most of level 9's gain for far less CPU on a small board

# the pages and their scripts change with an upgrade and have no version in their names: the
# browser keeps them but asks each time (304 by ETag, no body); the chart library a day
OWN_FILES = "no-cache"
VENDOR_FILES = "public, max-age=86400"


class CachedFiles(StaticFiles):
    """Static files with a Cache-Control header (on 200 and on 304 alike)."""

    def __init__(self, *, cache_control: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.cache_control = cache_control

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        """The file (or 304) with the Cache-Control of this mount."""
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = self.cache_control
        return response
