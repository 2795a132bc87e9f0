from tests.provisioning.pipeline.conftest import bench
from tests.support.lab import lab

__all__ = ["bench", "lab"]
