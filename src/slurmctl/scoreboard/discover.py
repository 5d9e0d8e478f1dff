"""New-user discovery: users seen in sacct batches (free: the ingest already read them) and a /home
listing. The registry ``state/users.json`` remembers who is known and queues user-scoped backfills.

A user-scoped backfill is ONE ``sacct -u <user>`` call covering the months the global backfill has not
reached yet (nothing when the global backfill is done). Months already read globally are never re-read
for a new user: their jobs there were counted by the global read. The exact dedupe makes the later
global read of those months skip the user's jobs that the user-scoped call already counted.
"""

import os
import re
from typing import Iterable, List, Set

from . import fsutil, layout
from .errors import FormatError
from .model import read_json

_NAME_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


def home_users(home_dir: str, min_uid: int, known: Iterable[str] = ()) -> Set[str]:
    """Return the names of directories in ``home_dir`` that look like users with UID >= ``min_uid``,
    leaving out ``known`` names (already registered: no need to stat them again).

    Owners are checked with ``os.stat`` (no NSS lookup per entry; /home is often NFS with thousands of
    entries, so only unknown names are stat'ed); empty when the directory is unreadable. ``home_dir``
    "" disables the listing.
    """
    known = set(known)
    if not home_dir:
        return set()
    try:
        entries = os.listdir(home_dir)
    except OSError:
        return set()
    out = set()
    for name in entries:
        if name in known or not _NAME_RE.match(name):
            continue
        try:
            st = os.stat(os.path.join(home_dir, name))
        except OSError:
            continue
        if st.st_uid >= min_uid and os.path.isdir(os.path.join(home_dir, name)):
            out.add(name)
    return out


class Registry:
    """``{"users": {name: {"first_seen", "source"}}, "queue": [name, ...], "done": [name, ...]}``."""

    def __init__(self, root: str, cluster: str) -> None:
        self.path = layout.users_registry(root, cluster)
        try:
            data = read_json(self.path)
        except FileNotFoundError:
            data = None
        self.existed = data is not None
        data = data if isinstance(data, dict) else {}
        self.users = data.get("users", {})  # type: Dict[str, Dict[str, str]]
        self.queue = data.get("queue", [])  # type: List[str]
        hint = "fix the field, or remove the file: it is rebuilt (queued user backfills are lost)"
        if not isinstance(self.users, dict):
            raise FormatError(f"{self.path}: field 'users' must be an object {{name: {{...}}}}", hint=hint)
        if not isinstance(self.queue, list) or not all(isinstance(u, str) for u in self.queue):
            raise FormatError(f"{self.path}: field 'queue' must be a list of user names", hint=hint)
        self.queue = list(self.queue)

    def register(self, names: Iterable[str], source: str, asof: str, enqueue: bool) -> List[str]:
        """Add unknown ``names``; queue them for a user-scoped backfill when ``enqueue``; return the new."""
        new = []
        for name in sorted(set(names)):
            if name in self.users:
                continue
            self.users[name] = {"first_seen": asof, "source": source}
            new.append(name)
            if enqueue and name not in self.queue:
                self.queue.append(name)
        return new

    def save(self) -> None:
        """Write the registry atomically. Idempotent."""
        fsutil.atomic_write_json(self.path, {"users": self.users, "queue": self.queue})
