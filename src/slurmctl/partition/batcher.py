"""Cutting the stream of accepted records into batches by count, by size, or both."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from itertools import accumulate
from operator import add
from typing import Any

from .durable import BatchWriter
from .jsonl import _scan
from .records import Run


class Batcher:
    """Closes a batch when it holds ``items_per_batch`` records or when the next record would take it
    past ``bytes_per_batch`` (a single record larger than that forms a batch of its own).

    Batches span input files: the cut depends only on the sequence of accepted records, so the output
    is the same however the input is split into files, blocks, or resumed runs.
    ``cursor`` is where a resumed run would start: just after the last record handed to a batch.
    """

    def __init__(
        self,
        writer: BatchWriter,
        sources: list[str],
        items_per_batch: int | None,
        bytes_per_batch: int | None,
        next_index: int,
        next_item: int,
        on_close: Callable[[], None],
    ) -> None:
        self.writer = writer
        self.sources = sources
        self.ipb = items_per_batch
        self.bpb = bytes_per_batch
        self.next_index = next_index
        self.next_item = next_item  # global number of the next accepted record
        # called after each batch closed by `add`: the moment a checkpoint may happen
        self.on_close = on_close
        self.open = False
        self._items = 0
        self._bytes = 0
        self._meta: dict[str, Any] = {}
        # (input index, offset, next line, items, rejected, blank, rejects bytes) after the last record
        self.cursor: tuple[int, ...] | None = None

    def add(self, run: Run, rejected: int, blank: int, rejects_bytes: int) -> None:
        """Append ``run``'s records; the counters describe everything before the run (for the cursor)."""
        lines = run.lines
        if lines is None:
            self._add_block(run, rejected, blank, rejects_bytes)
            return
        n = len(lines)
        g: list[int] | None = None  # g[k] = bytes of records 0..k-1 including one "\n" each
        i = 0
        while i < n:
            if not self.open:
                self._open(run, i)
            t = n - i if self.ipb is None else min(n - i, self.ipb - self._items)
            if self.bpb is not None:
                if g is None:
                    g = list(map(add, accumulate(map(len, lines), initial=0), range(n + 1)))
                k = bisect_right(g, g[i] + self.bpb - self._bytes, i, i + t + 1) - 1
                t = k - i
                if t == 0:
                    if self._items:
                        self._close()
                        self.on_close()
                        continue
                    t = 1  # a record larger than bytes_per_batch is a batch of its own
            c = run.consumed_norm
            if run.blob is not None:
                size = g[i + t] - g[i] if g is not None else sum(map(len, lines[i : i + t])) + t
                data: bytes | memoryview = memoryview(run.blob)[run.start + c : run.start + c + size]
            else:
                piece = lines[i : i + t]
                piece.append(b"")
                data = b"\n".join(piece)
                size = len(data)
            # the input's own bytes (run.exact): a reference batch may point at them instead
            self.writer.write(data, run.source if run.exact else None, run.base_off + c)
            self._items += t
            self._bytes += size
            run.consumed_norm += size
            i += t
            self.next_item += t
            self._meta["last_line"] = run.line_of(i - 1)
            self._meta["last_source"] = self.sources[run.source]
            off, next_line = run.cursor_after(i - 1)
            self.cursor = (run.source, off, next_line, self.next_item, rejected, blank, rejects_bytes)
            if (self.ipb is not None and self._items >= self.ipb) or (
                self.bpb is not None and self._bytes >= self.bpb
            ):
                self._close()
                self.on_close()

    def _add_block(self, run: Run, rejected: int, blank: int, rejects_bytes: int) -> None:
        """``add`` for a clean block (``run.lines`` is None): the cuts are found by newline searches in
        C, with no work per record. The same cuts as ``add`` makes for the same records as a list."""
        assert run.blob is not None and _scan is not None
        buf, n, base = run.blob, run.count, run.start
        i = 0
        while i < n:
            if not self.open:
                self._open(run, i)
            s = base + run.consumed_norm
            t = n - i if self.ipb is None else min(n - i, self.ipb - self._items)
            e = _scan.nth_newline(buf, s, run.end, t)
            if self.bpb is not None and e - s > self.bpb - self._bytes:
                k = buf.rfind(b"\n", s, s + self.bpb - self._bytes) + 1  # the records that still fit
                if k:
                    e = k
                    t = buf.count(b"\n", s, e)
                elif self._items:
                    self._close()
                    self.on_close()
                    continue
                else:  # a record larger than bytes_per_batch is a batch of its own
                    e = buf.index(b"\n", s) + 1
                    t = 1
            self.writer.write(memoryview(buf)[s:e], run.source, run.base_off + run.consumed_norm)
            self._items += t
            self._bytes += e - s
            run.consumed_norm += e - s
            i += t
            self.next_item += t
            self._meta["last_line"] = run.first_line + i - 1
            self._meta["last_source"] = self.sources[run.source]
            self.cursor = (
                run.source,
                run.base_off + run.consumed_norm,
                run.first_line + i,
                self.next_item,
                rejected,
                blank,
                rejects_bytes,
            )
            if (self.ipb is not None and self._items >= self.ipb) or (
                self.bpb is not None and self._bytes >= self.bpb
            ):
                self._close()
                self.on_close()

    def _open(self, run: Run, i: int) -> None:
        self.writer.open_batch(self.next_index)
        self.open = True
        self._items = 0
        self._bytes = 0
        self._meta = {
            "index": self.next_index,
            "first_item": self.next_item,
            "source": self.sources[run.source],
            "first_line": run.line_of(i),
        }

    def _close(self) -> int:
        self._meta["items"] = self._items
        self.writer.close_batch(self._meta)
        self.open = False
        self.next_index += 1
        return self._meta["index"]

    def finish(self) -> int | None:
        """Close the open batch, if any. Returns its index or None."""
        return self._close() if self.open else None
