"""Finding input files, telling their format and compression, and opening them as byte streams."""

from __future__ import annotations

import glob
import gzip
import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from slurmctl.errors import InputError

from .model import FORMATS

_FORMAT_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_COMPRESSION_SUFFIXES = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}

# Errors the decompressors raise on corrupt or truncated data; converted to InputError at the edge.
DECOMPRESSION_ERRORS: tuple[type[BaseException], ...] = (
    gzip.BadGzipFile,
    EOFError,
    zlib.error,
    zstandard.ZstdError,
)


@dataclass(frozen=True)
class InputFile:
    """One input file and how to read it."""

    path: Path
    format: str  # jsonl | csv | parquet
    compression: str | None  # gzip | zstd | None
    size_bytes: int
    mtime_ns: int
    delimiter: str  # CSV only: the suffix's default (",", or tab for .tsv)

    def describe(self) -> dict[str, object]:
        """Returns the JSON-ready description used in the summary and the state file."""
        return {
            "path": str(self.path),
            "format": self.format,
            "compression": self.compression,
            "size_bytes": self.size_bytes,
        }


def expand_inputs(spec: str | list[str], base_dir: Path) -> list[Path]:
    """Resolve a path or glob pattern (or a list of them) to input files.

    Relative patterns are taken from ``base_dir``; ``~`` is expanded; ``**`` matches any depth.
    Each pattern's matches are sorted by path (byte order, like ``LC_ALL=C ls``) and patterns keep the
    order they were given in; a file matched twice is kept at its first position. Deterministic.

    Returns: the files, as absolute paths.
    Raises: InputError when a pattern matches nothing, names a directory, or the spec is empty.
    Idempotent: yes (reads the file system only).
    """
    patterns = [spec] if isinstance(spec, str) else list(spec)
    if not patterns or any(not isinstance(p, str) or not p.strip() for p in patterns):
        raise InputError(
            f"no input given (got {spec!r})",
            hint="set `input:` to a file path or glob such as data/*.jsonl",
        )
    seen: set[Path] = set()
    result: list[Path] = []
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        full = expanded if os.path.isabs(expanded) else os.path.join(base_dir, expanded)
        if glob.has_magic(full):
            matches = [Path(m) for m in glob.glob(full, recursive=True)]
            files = [m for m in matches if m.is_file()]
            if not files:
                raise InputError(
                    f"input pattern {pattern!r} matches no files (looked in {Path(full).parent})",
                    hint="check the pattern; relative patterns are taken from the job file's directory",
                )
        else:
            path = Path(full)
            if path.is_dir():
                raise InputError(
                    f"input {pattern!r} is a directory: {path}",
                    hint=f"name the files with a glob, e.g. {os.path.join(pattern, '*.jsonl')}",
                )
            if not path.exists():
                raise InputError(
                    f"input file not found: {path}",
                    hint="check the path; relative paths are taken from the job file's directory",
                )
            files = [path]
        for f in sorted(files, key=lambda p: os.fsencode(str(p))):
            absolute = f.absolute()
            if absolute not in seen:
                seen.add(absolute)
                result.append(absolute)
    return result


def describe_input(path: Path, input_format: str | None, csv_delimiter: str | None) -> InputFile:
    """Work out how to read ``path`` from its name (``data.jsonl.zst`` → jsonl, zstd).

    Returns: the InputFile.
    Raises: InputError if the file is missing/unreadable, the format is unknown, or the file's first
        bytes show a compression its name does not (a gzip file named ``.jsonl``).
    Idempotent: yes.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"input file not found: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read input file {path}: {exc.strerror}") from exc
    if not path.is_file():
        raise InputError(f"input {path} is not a regular file")
    suffixes = [s.lower() for s in path.suffixes]
    compression = _COMPRESSION_SUFFIXES.get(suffixes[-1]) if suffixes else None
    data_suffix = (
        (suffixes[-2] if len(suffixes) >= 2 else "") if compression else (suffixes[-1] if suffixes else "")
    )
    fmt = input_format or _FORMAT_SUFFIXES.get(data_suffix)
    if fmt is None:
        raise InputError(
            f"cannot tell the format of {path} from its name",
            hint="name it .jsonl/.ndjson/.json, .csv/.tsv or .parquet (optionally + .gz/.zst), "
            "or set the input format explicitly (jsonl, csv or parquet)",
        )
    if fmt not in FORMATS:
        raise InputError(f"unknown input format {fmt!r} for {path}", hint=f"use one of {', '.join(FORMATS)}")
    if fmt == "parquet" and compression:
        raise InputError(
            f"{path}: Parquet files cannot be wrapped in {compression}",
            hint="decompress the file; Parquet compresses its columns itself",
        )
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise InputError(f"cannot read input file {path}: {exc.strerror}") from exc
    sniffed = next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)
    if compression is None and sniffed and fmt != "parquet":
        ext = ".gz" if sniffed == "gzip" else ".zst"
        raise InputError(
            f"{path} is {sniffed}-compressed but its name does not say so",
            hint=f"rename it to {path.name}{ext} so it is decompressed while reading",
        )
    delimiter = csv_delimiter or ("\t" if data_suffix == ".tsv" else ",")
    return InputFile(path, fmt, compression, st.st_size, st.st_mtime_ns, delimiter)


class ByteStream:
    """A file's decompressed bytes, read forward; ``raw_pos`` is how far into the file on disk we are."""

    def __init__(self, inp: InputFile) -> None:
        self.input = inp
        try:
            self._raw: BinaryIO = open(inp.path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise InputError(f"cannot open input file {inp.path}: {exc.strerror}") from exc
        self._stream: io.RawIOBase | BinaryIO
        if inp.compression == "gzip":
            self._stream = gzip.GzipFile(fileobj=self._raw, mode="rb")
        elif inp.compression == "zstd":
            # read_across_frames: `pzstd` and concatenated files hold several frames; read them all.
            self._stream = zstandard.ZstdDecompressor().stream_reader(self._raw, read_across_frames=True)
        else:
            self._stream = self._raw

    @property
    def raw_pos(self) -> int:
        """Returns how many bytes of the file on disk have been consumed (drives progress)."""
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return 0

    def read(self, size: int) -> bytes:
        """Returns up to ``size`` decompressed bytes; b"" at the end.

        Raises: InputError for corrupt or truncated compressed data, or a read error.
        """
        try:
            return self._stream.read(size) or b""
        except DECOMPRESSION_ERRORS as exc:
            raise InputError(
                f"{self.input.path}: cannot decompress ({self.input.compression}): {exc}",
                hint="the file is corrupt or truncated; re-create or re-download it",
            ) from exc
        except OSError as exc:
            raise InputError(f"error reading {self.input.path}: {exc}") from exc

    def skip_to(self, offset: int) -> None:
        """Position the stream at decompressed byte ``offset`` (resuming). Seeks when uncompressed.

        Raises: InputError as ``read`` does.
        """
        if offset <= 0:
            return
        if self.input.compression is None:
            self._raw.seek(offset)
            return
        # Compressed streams cannot seek; decompress and drop (fast compared with parsing).
        remaining = offset
        while remaining > 0:
            chunk = self.read(min(remaining, 1 << 22))
            if not chunk:
                break
            remaining -= len(chunk)

    def rewind(self, count: int) -> None:
        """Step back ``count`` bytes, so that they are read again (uncompressed files only).

        Raises: InputError when the file cannot seek."""
        assert self.input.compression is None
        try:
            self._raw.seek(-count, os.SEEK_CUR)
        except OSError as exc:
            raise InputError(f"error reading {self.input.path}: {exc}") from exc

    def close(self) -> None:
        """Close the stream and the file. Idempotent."""
        try:
            if self._stream is not self._raw:
                self._stream.close()
        finally:
            self._raw.close()
