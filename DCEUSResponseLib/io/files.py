"""What every reader checks before it opens a file the user named.

Only regular files are opened: a FIFO blocks ``open`` until someone writes to it, and a device
such as ``/dev/zero`` never ends, so either would hang the reader (or fill the memory).
"""
from __future__ import annotations

import os
import stat

from DCEUSResponseLib.errors import InputError

#: Largest decoded clip a reader accepts (bytes). The analysis holds a few float32 copies of the
#: contrast panel besides it, so a larger clip would exhaust a workstation; 1000 x 800 x 3000 RGB
#: frames are 7.2 GB.
MAX_DECODED_BYTES = 8 << 30

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def require_regular_file(path: str | os.PathLike, what: str = "file", max_bytes: int | None = None) -> int:
    """Size in bytes of ``path`` once it is known to be a regular file (symbolic links followed).

    Raises InputError naming ``path`` when it is missing, a folder, a FIFO, a device or a socket,
    cannot be examined, or (``max_bytes``) is larger than such a file can credibly be.
    """
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{what} not found", path) from None
    except OSError as error:
        raise InputError(f"{what} cannot be examined ({error.strerror or error})", path) from None
    if stat.S_ISDIR(status.st_mode):
        raise InputError(f"is a folder, expected a {what}", path)
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in _KINDS if test(status.st_mode)), "a special file")
        raise InputError(f"is not a regular file ({kind}); give the {what} itself", path)
    if max_bytes is not None and status.st_size > max_bytes:
        raise InputError(f"is {status.st_size / 2**20:.0f} MiB, more than the {max_bytes / 2**20:.0f} MiB a "
                         f"{what} can be; is it the right file?", path)
    return int(status.st_size)
