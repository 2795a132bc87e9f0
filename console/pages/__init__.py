"""One module per page (or group of pages): its ``router`` (``console.pages._kit.
page_router()``) and its navigation entry (``NAV``). See docs/console.md."""
