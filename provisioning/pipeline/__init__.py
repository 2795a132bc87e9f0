"""The job engine and what it runs: the worker, the steps, the device's stages, the
bandwidth shares."""
