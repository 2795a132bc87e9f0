"""The demo: a small data set (``seed``) and the embedded all-in-one run behind ``make run``
(``run``). A top-level package of its own: it drives every domain, so nothing below
it may import it."""
