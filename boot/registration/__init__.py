"""Self-registration of PEs: bench enrollment credentials, register and heartbeat,
per-boot agent tokens, matching by serial (docs/boot.md, "Registration").

Importing this package (the app factory does, through ``boot.router``) registers the
kernel-argument provider that puts a bench's enrollment credential on its PEs' command
line.
"""

from boot.registration.netboot import register_kernel_arg_provider

register_kernel_arg_provider()
