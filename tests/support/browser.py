"""Debian's Chromium, driven by Playwright, for the explorer's browser tests.

    with chromium_page(profile, viewport={"width": 1280, "height": 1000}) as page: ...

The flags keep Chromium from reaching for Google's hosts, which this machine's
closed network refuses; the profile is a fresh folder per test module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000  # a bound on waiting for the page to show an answer


@contextmanager
def chromium_page(profile: Path, **context_options) -> Iterator[Page]:
    """A page in a fresh persistent context; fails naming the package when Chromium is absent."""
    if not CHROMIUM.exists():
        pytest.fail(
            "Debian's chromium is not installed: run `bash scripts/test.sh`, which installs "
            "it, or `apt-get install -y --no-install-recommends chromium`"
        )
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            **context_options,
        )
        context.set_default_timeout(WAIT_MS)
        try:
            yield context.new_page()
        finally:
            context.close()
