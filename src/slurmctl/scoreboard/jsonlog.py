"""JSON-lines logs: one object per line on stderr and in ``state/log/poll.jsonl`` (rotated at 5 MB).

Keys: ``ts, level, cluster, phase, msg`` plus whatever the call adds (``month, calls, bytes, jobs_seen,
jobs_new, rate_sleep_ms`` ...).
"""

import datetime
import json
import os
import sys
from typing import IO, Any, Optional

_ROTATE_BYTES = 5 * 1024 * 1024


class JsonLog:
    """Writes log records; keeps the last error records for the health file."""

    def __init__(
        self,
        cluster: str = "",
        path: Optional[str] = None,
        stream: Optional[IO[str]] = None,
        quiet: bool = False,
    ) -> None:
        self.cluster = cluster
        self.path = path
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.phase = ""
        self.errors = []  # type: List[str]

    def __call__(self, level: str, msg: str, **fields: Any) -> None:
        rec = {
            "ts": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": level,
            "cluster": self.cluster,
            "phase": fields.pop("phase", self.phase),
            "msg": msg,
        }
        rec.update(fields)
        line = json.dumps(rec, default=str, separators=(",", ":"))
        if level == "error":
            self.errors.append(msg)
        if not self.quiet or level in ("warning", "error"):
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
        if self.path:
            self._append(line)

    def _append(self, line: str) -> None:
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            if os.path.exists(self.path) and os.path.getsize(self.path) > _ROTATE_BYTES:
                os.replace(self.path, self.path + ".1")
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError:
            pass  # logging must never break a poll; stderr still has the record
