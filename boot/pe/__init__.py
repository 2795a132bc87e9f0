"""The preboot environment (PE): a Debian kernel and an initramfs built from Debian
packages (``masterline pe build``), stored with their sha256 in a small catalogue, and
the USB stick image that boots it under Secure Boot (``masterline pe usb``)."""
