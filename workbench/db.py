"""Database URLs: `postgresql://` works with whichever PostgreSQL driver is installed."""

from __future__ import annotations

import importlib.util


def driver_url(url: str) -> str:
    """`postgresql://...` with the installed driver spelled out; any other URL unchanged.

    SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3; our `dev` extra (and many
    machines) have psycopg2, so without this a plain PostgreSQL URL fails to import a driver.
    """
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url
