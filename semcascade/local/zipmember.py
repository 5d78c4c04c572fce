"""Read one member out of a zip archive that was split into byte chunks (``NAME.zip.001``, ``.002``, ...).

The chunks are plain slices of one ordinary zip (single "disk", absolute offsets),
as ``split -b`` makes them, and only some of them may be at hand: a member is
read from the chunks its bytes lie in, plus the last chunk, which holds the
central directory. Nothing is loaded whole: :func:`inflate_member` streams the
member's deflate (or stored) data from chunk to chunk through ``zlib`` and
writes the inflated bytes to a file object, checking the CRC-32 and the size
recorded in the central directory.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from semcascade.errors import ArchiveMemberError

__all__ = ["ChunkedFile", "ZipMember", "find_member", "inflate_member"]

_EOCD_SIG = b"PK\x05\x06"
_CDIR_SIG = b"PK\x01\x02"
_LOCAL_SIG = b"PK\x03\x04"
_EOCD64_LOCATOR_SIG = b"PK\x06\x07"
_CDIR_HEADER = struct.Struct("<4sHHHHHHIIIHHHHHII")
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_EOCD = struct.Struct("<4sHHHHIIH")
_READ = 4 * 1024 * 1024
_STORED, _DEFLATED = 0, 8


@dataclass(frozen=True)
class ZipMember:
    """A member's facts from the central directory (offsets are in the joined archive)."""

    name: str
    method: int
    crc32: int
    compressed_size: int
    size: int
    header_offset: int


class ChunkedFile:
    """Byte ranges of a joined archive, read from the chunk files that hold them.

    ``chunks``: ``(absolute start offset, path)`` of each available chunk; the
    chunks need not be contiguous, but a read must stay within present ones.
    """

    def __init__(self, chunks: Sequence[tuple[int, Path]]) -> None:
        self.chunks = sorted((int(start), Path(path)) for start, path in chunks)
        self._sizes = [p.stat().st_size for _, p in self.chunks]

    @property
    def end(self) -> int:
        """The offset one past the last byte of the last chunk (the joined archive's size)."""
        start, _ = self.chunks[-1]
        return start + self._sizes[-1]

    def iter_range(self, offset: int, length: int) -> Iterator[bytes]:
        """Yield the bytes ``[offset, offset + length)`` in pieces of at most a few MiB."""
        pos, stop = offset, offset + length
        while pos < stop:
            index = self._chunk_at(pos)
            start, path = self.chunks[index]
            upto = min(stop, start + self._sizes[index])
            with path.open("rb") as f:
                f.seek(pos - start)
                while pos < upto:
                    piece = f.read(min(_READ, upto - pos))
                    if not piece:
                        raise ArchiveMemberError(f"{path} ended early at offset {pos}")
                    pos += len(piece)
                    yield piece

    def read(self, offset: int, length: int) -> bytes:
        return b"".join(self.iter_range(offset, length))

    def _chunk_at(self, pos: int) -> int:
        for i, (start, _) in enumerate(self.chunks):
            if start <= pos < start + self._sizes[i]:
                return i
        raise ArchiveMemberError(f"no chunk holds offset {pos} of the archive (a part is missing)")


def find_member(archive: ChunkedFile, name: str) -> ZipMember:
    """Look ``name`` up in the central directory (which must lie in the chunks given)."""
    end = archive.end
    start, _ = archive.chunks[-1]
    tail_len = min(end - start, 65_557)  # the EOCD record plus its longest comment
    tail = archive.read(end - tail_len, tail_len)
    at = tail.rfind(_EOCD_SIG)
    if at < 0 or len(tail) - at < _EOCD.size:
        raise ArchiveMemberError("no end-of-central-directory record in the last chunk (not the last part of a zip?)")
    if tail.rfind(_EOCD64_LOCATOR_SIG, 0, at) >= 0:
        raise ArchiveMemberError("zip64 archives are not supported")
    _, disk, cd_disk, _, entries, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
    if disk or cd_disk:
        raise ArchiveMemberError("multi-disk (spanned) zips are not supported; expected byte chunks of one zip")
    directory = archive.read(cd_offset, cd_size)
    pos = 0
    for _ in range(entries):
        fields = _CDIR_HEADER.unpack_from(directory, pos)
        if fields[0] != _CDIR_SIG:
            raise ArchiveMemberError(f"malformed central directory at offset {cd_offset + pos}")
        method, crc, csize, size = fields[4], fields[7], fields[8], fields[9]
        name_len, extra_len, comment_len, offset = fields[10], fields[11], fields[12], fields[16]
        entry_name = directory[pos + _CDIR_HEADER.size : pos + _CDIR_HEADER.size + name_len].decode("utf-8", "replace")
        if entry_name == name:
            return ZipMember(name, method, crc, csize, size, offset)
        pos += _CDIR_HEADER.size + name_len + extra_len + comment_len
    raise ArchiveMemberError(f"the archive has no member {name!r}")


def _data_offset(archive: ChunkedFile, member: ZipMember) -> int:
    header = archive.read(member.header_offset, _LOCAL_HEADER.size)
    fields = _LOCAL_HEADER.unpack(header)
    if fields[0] != _LOCAL_SIG:
        raise ArchiveMemberError(f"no local file header at offset {member.header_offset}")
    name_len, extra_len = fields[9], fields[10]
    name = archive.read(member.header_offset + _LOCAL_HEADER.size, name_len).decode("utf-8", "replace")
    if name != member.name:
        raise ArchiveMemberError(
            f"the local header at offset {member.header_offset} names {name!r}, not {member.name!r}"
        )
    return int(member.header_offset + _LOCAL_HEADER.size + name_len + extra_len)


def inflate_member(
    archive: ChunkedFile,
    member: ZipMember,
    out: BinaryIO,
    on_bytes: Callable[[bytes], None] | None = None,
) -> None:
    """Write the member's uncompressed bytes to ``out``, streaming; check its CRC-32 and size.

    ``on_bytes`` sees every uncompressed piece (e.g. to hash it, or to advance a progress bar).
    """
    if member.method not in (_STORED, _DEFLATED):
        raise ArchiveMemberError(f"member {member.name!r} uses compression method {member.method}; only deflate/stored")
    start = _data_offset(archive, member)
    inflater = zlib.decompressobj(-15) if member.method == _DEFLATED else None
    crc, size = 0, 0

    def emit(data: bytes) -> None:
        nonlocal crc, size
        if data:
            crc = zlib.crc32(data, crc)
            size += len(data)
            out.write(data)
            if on_bytes is not None:
                on_bytes(data)

    for piece in archive.iter_range(start, member.compressed_size):
        emit(inflater.decompress(piece) if inflater is not None else piece)
    if inflater is not None:
        emit(inflater.flush())
        if not inflater.eof:
            raise ArchiveMemberError(f"member {member.name!r}: the deflate stream is truncated")
    if size != member.size:
        raise ArchiveMemberError(f"member {member.name!r} inflated to {size} bytes, the directory says {member.size}")
    if crc != member.crc32:
        raise ArchiveMemberError(f"member {member.name!r} has CRC-32 {crc:08x}, the directory says {member.crc32:08x}")
