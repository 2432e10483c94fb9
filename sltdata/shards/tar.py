"""The tar format of a shard, both ways: the one module in sltdata that imports ``tarfile``.

Writing frames members by hand (``member_header`` + data + ``padding``, then ``end_of_archive``) so
every byte is a function of the store and the seed (mtime 0, uid/gid 0, empty user/group names,
mode 0444) and data streams from the Arrow buffer without a copy; ``tarfile`` only builds the
ustar/pax header block. Reading (``iter_members``) streams members in order with ``tarfile``'s
``r|`` mode, or ``r:`` (seekable, skipping unwanted data) when only some members are wanted.
"""

from __future__ import annotations

import tarfile
from typing import BinaryIO, Callable, Iterator

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE

# What a damaged or truncated tar raises while being read (tarfile, a short read, the file itself).
TAR_ERRORS = (tarfile.TarError, EOFError, OSError)


def member_header(name: str, size: int) -> bytes:
    """The header block(s) of a regular file member, with every varying field fixed."""
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = size, 0, 0o444, 0, 0, "", ""
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def padding(size: int) -> int:
    """Zero bytes that follow ``size`` bytes of member data up to a whole block."""
    return (-size) % BLOCK


def member_size(header: int, size: int) -> int:
    """Bytes a member takes in the archive: header, data, padding."""
    return header + size + padding(size)


def end_of_archive(written: int) -> int:
    """Zero bytes that end an archive of ``written`` bytes: two blocks, padded to a whole record, as
    ``tarfile.close()`` writes them."""
    end = 2 * BLOCK
    return end + (-(written + end)) % RECORD


def iter_members(fileobj: BinaryIO, wanted: Callable[[str], bool] | None = None,
                 seekable: bool = False) -> Iterator[tuple[str, bool, bytes | None]]:
    """(name, is a regular file, data) for every member, in archive order.

    ``wanted(name)`` False: the data is not read (None), only skipped. ``seekable`` skips it by
    seeking (``fileobj`` must seek); otherwise the stream is read through. Raises what ``tarfile``
    raises on a damaged archive (``TAR_ERRORS``).
    """
    with tarfile.open(fileobj=fileobj, mode="r:" if seekable else "r|") as tar:
        for m in tar:
            regular = m.isreg()
            if regular and (wanted is None or wanted(m.name)):
                yield m.name, True, tar.extractfile(m).read()
            else:
                yield m.name, regular, None
