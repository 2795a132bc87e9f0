"""The PE's agent: reads the laptop's identity and hardware, registers it with the
Masterline API, heartbeats, and does what the answers say.

Standard library only: it runs on Debian's ``python3`` inside the preboot environment,
copied there as ``/opt/masterline/agent/`` and started as ``python3 -m agent``. Every
import inside the package is relative, so it works both as ``agent`` (in the PE) and as
``boot.agent`` (in the repository's tests).
"""

VERSION = "1"
