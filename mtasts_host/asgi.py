"""
The application for any ASGI server, configured from ``MTASTS_HOST_CONFIG`` and the other
``MTASTS_HOST_*`` variables of ``serve``'s app options (``ACCESS_LOG``, ``METRICS``,
``WATCH``, and ``LOG_FORMAT`` for mtasts-host's own lines where the server leaves them
unhandled)::

    uvicorn mtasts_host.asgi:app --no-access-log
    granian --interface asgi mtasts_host.asgi:app

Importing this module loads the configuration; a bad one ends the process with the same
one-line error as ``mtasts-host serve`` (exit status 1; 2 for a bad variable).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from . import logs
from .app import PolicyApp
from .options import UsageError, resolve_all
from .server import APP_OPTIONS, LOG_FORMAT, build_app

_OPTIONS = (*APP_OPTIONS, LOG_FORMAT)
logger = logging.getLogger(__name__)


def _from_environment() -> PolicyApp:
    args = argparse.Namespace(**{option.dest: None for option in _OPTIONS})
    try:
        resolve_all(args, _OPTIONS, os.environ)
        if args.config is None:
            raise UsageError("no configuration file: set MTASTS_HOST_CONFIG")
    except UsageError as exc:
        print(f"mtasts-host: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.attach(args.log_format)
    app = build_app(args)
    if app is None:
        raise SystemExit(1)
    publish = app.store.config.publish
    if publish is not None and publish.auto:
        # Only serve runs the publisher: here the records are the operator's to publish.
        logger.warning(
            "%s: publish.auto is acted on by 'mtasts-host serve' alone; under another ASGI "
            "server, run 'mtasts-host publish' after each change",
            app.store.config.path,
        )
    return app


app = _from_environment()
