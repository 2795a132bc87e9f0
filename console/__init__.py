"""The web console: server-rendered pages for the bench, supervisors, client IT and
logistics, mounted by the API app (``console.app.mount``). See docs/console.md."""
