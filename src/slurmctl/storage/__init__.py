"""Storage backends. See :mod:`slurmctl.storage.base` for the contract."""

from slurmctl.storage.base import Backend, ObjectInfo, ObjectStore, Record, StateStore

__all__ = ["Backend", "ObjectInfo", "ObjectStore", "Record", "StateStore"]
