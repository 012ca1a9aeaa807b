"""Server pack bytes kept on disk, so that an interrupted clone resumes without reading them
again.

One append-only data file and one index file per server pack, under a resume directory
outside the clone (the clone directory itself is removed on failure).  An index line is
written only after its bytes, so a crash leaves at worst unindexed bytes; no fsync, because
bytes damaged by a power loss fail git's hash check and are then read again.  The
pack's validator is stored with them: bytes of a pack that changed on the server are dropped.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, TextIO

from lazygit.blockcache import read_through
from lazygit.catalog import PackHandle
from lazygit.ranges import Extent

#: Bytes are stored in pieces of at most this size: what an interrupted read keeps.
PIECE = 256 * 1024


class RangeStore:
    """Byte segments of server packs on disk: (pack, start) -> bytes; thread-safe."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._segments: dict[str, list[tuple[int, int, int]]] = {}  # pack -> (start, len, pos)
        self._checked: set[str] = set()
        # pack -> (data file, index file), open for appending while the clone runs
        self._writers: dict[str, tuple[BinaryIO, TextIO]] = {}
        self.reused = 0  # bytes served from disk

    def _files(self, pack: str) -> tuple[Path, Path, Path]:
        d = self.directory
        return d / f"{pack}.data", d / f"{pack}.index", d / f"{pack}.json"

    def _open(self, handle: PackHandle) -> None:
        """Load (or, if the pack changed on the server, drop) what is stored for ``handle``."""
        name = handle.name
        if name in self._checked:
            return
        data, index, meta = self._files(name)
        want = {
            "size": handle.info.size,
            "etag": handle.info.etag,
            "last_modified": handle.info.last_modified,
        }
        try:
            same = json.loads(meta.read_text()) == want
        except (OSError, ValueError):
            same = False
        segments: list[tuple[int, int, int]] = []
        if same and data.exists() and index.exists():
            size = data.stat().st_size
            for line in index.read_text().splitlines():
                parts = line.split()
                if len(parts) == 3 and all(p.isdigit() for p in parts):
                    start, length, pos = map(int, parts)
                    if pos + length <= size:
                        segments.append((start, length, pos))
        else:
            for f in (data, index):
                f.unlink(missing_ok=True)
            meta.write_text(json.dumps(want))
        segments.sort()
        self._segments[name] = segments
        self._checked.add(name)

    def close(self) -> None:
        """Close the files kept open for appending (what was written stays)."""
        with self._lock:
            for data, index in self._writers.values():
                data.close()
                index.close()
            self._writers.clear()

    def clear(self) -> None:
        """Forget everything (bytes that failed a hash check may be among them)."""
        self.close()
        with self._lock:
            for pack in list(self._segments):
                for f in self._files(pack):
                    f.unlink(missing_ok=True)
            self._segments.clear()
            self._checked.clear()

    def covered(self, pack: str, ext: Extent) -> list[tuple[int, bytes]]:
        """Stored segments overlapping ``ext`` as (start, data), sorted."""
        with self._lock:
            segs = self._segments.get(pack, [])
            i = max(bisect.bisect_right(segs, (ext.start, 1 << 62, 0)) - 1, 0)
            hits = []
            while i < len(segs) and segs[i][0] < ext.end:
                start, length, pos = segs[i]
                if start + length > ext.start:
                    hits.append((start, length, pos))
                i += 1
        if not hits:
            return []
        out = []
        with open(self._files(pack)[0], "rb") as f:
            for start, length, pos in hits:
                f.seek(pos)
                out.append((start, f.read(length)))
        self.reused += sum(len(d) for _, d in out)
        return out

    def put(self, pack: str, start: int, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            files = self._writers.get(pack)
            if files is None:
                data_path, index_path, _ = self._files(pack)
                files = self._writers[pack] = (open(data_path, "ab"), open(index_path, "a"))  # noqa: SIM115
            out, index = files
            pos = out.tell()
            out.write(data)
            out.flush()  # bytes before their index line; a torn tail is ignored on load
            index.write(f"{start} {len(data)} {pos}\n")
            index.flush()
            bisect.insort(self._segments.setdefault(pack, []), (start, len(data), pos))

    def read(
        self,
        handle: PackHandle,
        extents: Sequence[Extent],
        on_bytes: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[Extent, bytes]]:
        """The Reader protocol (blockcache.Reader): disk first, the server for the rest."""
        self._open(handle)
        return read_through(self, handle, extents, on_bytes, piece=PIECE)
