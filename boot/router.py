"""The ``boot`` domain's routes, one router for the app factory to include."""

from __future__ import annotations

from api.deps import new_router
from boot.hardware.router import router as hardware_router
from boot.netboot.router import router as netboot_router
from boot.registration.router import router as registration_router

router = new_router()
router.include_router(registration_router)
router.include_router(hardware_router)
router.include_router(netboot_router)
