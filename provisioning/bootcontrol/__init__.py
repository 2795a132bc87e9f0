"""Boot control: how a laptop reboots, whether it is in its provisioning environment
(PE) or its installed OS, where its PE answers (and with which host key), and where its
installed OS answers after the reboot. One implementation per kind of laptop, chosen per
laptop by name, as Ironic's hardware types are; the steps never ask which one it is.
See ``base.py`` for the interface and docs/architecture.md, "Where to put a new boot
control"."""
