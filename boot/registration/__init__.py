"""Self-registration of PEs: bench enrollment credentials, register and heartbeat,
per-boot agent tokens, matching by serial (docs/boot.md, "Registration").

``wiring.wire()`` registers this package's kernel-argument provider (the bench's
enrollment credential on its PEs' command line) at start.
"""
