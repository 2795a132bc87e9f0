"""A PE relay with a fault, for the tests: ``python3 faulty_relay.py RELAY MODE``.

``forward``: flips a byte of every chunk it sends downstream (a corrupt relay);
``disk``: flips a byte of every chunk it writes (a disk that lies); ``full``: its disk
fills up after two chunks; ``slow``: every write takes 0.2 s more (a slow disk).
Everything else is the real ``relay.py``, loaded from
``RELAY``.
"""

import errno
import importlib.util
import os
import sys

sys.path.insert(0, os.path.dirname(sys.argv[1]))  # relay_wire.py, beside it
spec = importlib.util.spec_from_file_location("relay", sys.argv[1])
assert spec is not None and spec.loader is not None
relay = importlib.util.module_from_spec(spec)
spec.loader.exec_module(relay)


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 0xFF]) + bytes(data[1:])


if sys.argv[2] == "forward":
    relay.outgoing = _flip  # type: ignore[attr-defined]  # a loaded module, patched on purpose
elif sys.argv[2] == "disk":
    real_pwrite = os.pwrite

    class _LyingOs:
        def __getattr__(self, name: str) -> object:
            return getattr(os, name)

        @staticmethod
        def pwrite(fd: int, data: bytes, offset: int) -> int:
            return real_pwrite(fd, _flip(data), offset)

    relay.wire.os = _LyingOs()
elif sys.argv[2] == "full":
    real_pwrite = os.pwrite
    written: list[int] = []

    class _FullOs:
        def __getattr__(self, name: str) -> object:
            return getattr(os, name)

        @staticmethod
        def pwrite(fd: int, data: bytes, offset: int) -> int:
            if len(written) >= 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written.append(offset)
            return real_pwrite(fd, data, offset)

    relay.wire.os = _FullOs()
elif sys.argv[2] == "slow":
    import time

    real_pwrite = os.pwrite

    class _SlowOs:
        def __getattr__(self, name: str) -> object:
            return getattr(os, name)

        @staticmethod
        def pwrite(fd: int, data: bytes, offset: int) -> int:
            time.sleep(0.2)
            return real_pwrite(fd, data, offset)

    relay.wire.os = _SlowOs()
sys.exit(relay.main())
