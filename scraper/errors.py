"""The exceptions a user of the library may catch.

    ScraperError                 base of everything below
    ├── ConfigError              config.toml or an override is unusable (CLI: exit 2)
    ├── UsageError               the run cannot start as asked (CLI: exit 2):
    │   └── OutputExistsError    output already there, and neither resume nor overwrite
    └── OutputError              the output cannot be written (CLI: exit 1)

Failures of single pages are never raised: they are records (`Page.error`).
"""

from __future__ import annotations

__all__ = ["ConfigError", "OutputError", "OutputExistsError", "ScraperError", "UsageError"]


class ScraperError(Exception):
    """Base of the errors the library raises."""


class ConfigError(ScraperError, ValueError):
    """A config file or override is unusable; the message names key and file."""


class UsageError(ScraperError):
    """The run cannot start as asked (a missing URLS_FILE, a format mismatch on resume)."""


class OutputExistsError(UsageError):
    """The output folder already holds a crawl, and neither resume nor overwrite was asked."""


class OutputError(ScraperError):
    """Writing the output failed (disk full, permission denied): the run stops."""
