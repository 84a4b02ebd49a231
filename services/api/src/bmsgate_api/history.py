"""The history service's refusals as HTTP errors, mapped in this one place."""

from __future__ import annotations

from typing import Final

from fastapi import HTTPException

from bmsgate_common.models import HistoryErrorCode, HistoryFileReply, HistoryReply

STATUS: Final[dict[HistoryErrorCode, int]] = {
    "invalid": 422,  # a day out of range, a malformed or too large request
    "not_found": 404,  # a pack the archive and the configuration do not know
    "disabled": 404,  # history.archive.enabled is false: there is no archive
    "internal": 500,  # a bug in the history service; its log has the traceback
}


def raise_for(reply: HistoryReply | HistoryFileReply) -> None:
    """Raise the HTTP error of an error reply (its one-line reason as the detail)."""
    if reply.status == "ok":
        return
    status = STATUS.get(reply.code or "invalid", 422)
    raise HTTPException(status_code=status, detail=reply.error or "the history service refused")
