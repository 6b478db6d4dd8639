"""Every flow version that has served patients, kept by its hash, so that a conversation
started on an earlier version can finish on it after an edit or a restart."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .loader import check_text
from .model import Flow

logger = logging.getLogger(__name__)


class FlowArchive:
    """A folder of `<hash>.yaml` files (default `data/flow-versions/`)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def save(self, flow: Flow) -> None:
        if not flow.hash or not flow.source:
            return
        path = self.folder / f"{flow.hash}.yaml"
        if path.exists():
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(flow.source, encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            logger.warning("could not archive flow version %s: %s", flow.hash, exc)

    def publish(self) -> None:
        """Nothing to share: the folder is written at once (see ``SharedFlowArchive``)."""

    def load(self, flow_hash: str) -> Flow | None:
        if not flow_hash.isalnum():
            return None
        path = self.folder / f"{flow_hash}.yaml"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            return None
        res = check_text(text, str(path), lint=False)
        if res.flow is None or res.flow.hash != flow_hash:
            logger.warning("archived flow version %s cannot be loaded", flow_hash)
            return None
        return res.flow
