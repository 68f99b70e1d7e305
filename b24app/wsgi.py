"""The WSGI entry point for production: ``gunicorn -w 4 -b 0.0.0.0:8000 'b24app.wsgi:create()'``.

Importing this module does nothing; gunicorn calls ``create()`` in each worker process (do not
add ``--preload``: the engine and the REST clients' loop thread must not cross a ``fork``).
Settings come from ``$B24APP_CONFIG`` and ``B24APP_*`` variables. ``gunicorn b24app.wsgi:app``
works too: ``app`` is built on first access, by the same function.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask


def create() -> Flask:
    """The app of this process: settings from the environment, database migrated to head."""
    from b24app.bootstrap import build_context
    from b24app.config import load_settings
    from b24app.web import create_app

    settings = load_settings()
    # gunicorn configures its own loggers only; give ours the configured level and handler.
    logging.basicConfig(level=settings.app.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(build_context(settings))


_app: Flask | None = None


def __getattr__(name: str) -> Any:
    """``b24app.wsgi.app``: built lazily, once per process, for ``gunicorn b24app.wsgi:app``."""
    global _app  # noqa: PLW0603 - the one lazily built app of the process
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        _app = create()
    return _app
