"""The boot domain's fixtures (two sites, bench credentials, PAR with a worker key, a
data directory of the test's own), for the boot controls that read registrations."""

from tests.boot.conftest import boot, boot_settings

__all__ = ["boot", "boot_settings"]
