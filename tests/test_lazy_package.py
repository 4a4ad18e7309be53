"""The parse workers' imports: `scraper.parse` without the crawler, and the package's names all there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import scraper

ROOT = Path(__file__).resolve().parent.parent


def test_the_parse_code_imports_neither_aiohttp_nor_the_config_models():
    code = "import json, sys, scraper.pool, scraper.parse; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    assert "scraper.parse" in loaded and "scraper.pool" in loaded
    assert not [m for m in loaded if m.startswith(("aiohttp", "pydantic"))]
    assert "scraper.config" not in loaded and "scraper.pipeline" not in loaded


def test_every_public_name_is_listed_and_imports():
    assert set(scraper.__all__) <= set(dir(scraper))
    for name in scraper.__all__:
        assert getattr(scraper, name) is not None
    from scraper import Config, Scraper  # the usual way still works

    assert Scraper.__module__ == "scraper.pipeline" and Config.__module__ == "scraper.config"
