"""Relay imaging: one copy of an image leaves the server and is relayed laptop to
laptop along a chain of PEs (docs/relay.md). The PE side is ``boot/agent/relay.py``."""
