from tests.support.lab import lab

__all__ = ["lab"]
