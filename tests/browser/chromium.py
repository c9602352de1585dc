"""A small harness around headless Chromium for tests of the web pages eddy serves.

Chromium runs as a plain subprocess (no driver, no extra Python package): ``--dump-dom``
gives the DOM after the page's scripts ran for a virtual-time budget, ``--screenshot``
a PNG that a person (or a later check) can look at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 60
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # tests run as root in containers, where the sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",  # /dev/shm is tiny in containers
    "--hide-scrollbars",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--mute-audio",
)


class ChromiumError(RuntimeError):
    """Chromium failed, timed out or produced nothing."""


def find_chromium() -> str | None:
    """``EDDY_CHROMIUM`` if set, else the first Chromium-like browser on PATH."""
    configured = os.environ.get("EDDY_CHROMIUM")
    if configured:
        return configured
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The browser's path, or a pytest skip that says how to get one."""
    found = find_chromium()
    if found is None:
        pytest.skip(
            "no Chromium found (set EDDY_CHROMIUM or put chromium on PATH); "
            "on Debian install it with: apt-get install -y chromium"
        )
    return found


def artifacts_dir() -> Path:
    """Where tests leave files for people to look at: ``EDDY_TEST_ARTIFACTS`` or <repo>/test-artifacts."""
    path = Path(os.environ.get("EDDY_TEST_ARTIFACTS") or REPO_ROOT / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run(browser: str, args: list[str], url: str) -> str:
    # A fresh profile per run: no cache, cookies or crash-restore state leaks between tests.
    with tempfile.TemporaryDirectory(prefix="eddy-chromium-") as profile:
        argv = [browser, *FLAGS, f"--user-data-dir={profile}", *args, url]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
            raise ChromiumError(f"chromium did not finish within {TIMEOUT_S} s on {url}\n{stderr[-4000:]}") from exc
        except OSError as exc:
            raise ChromiumError(f"cannot run {browser!r}: {exc}") from exc
    if done.returncode != 0:
        raise ChromiumError(f"chromium exited with {done.returncode} on {url}\n{done.stderr[-4000:]}")
    return done.stdout


def render(
    url: str,
    screenshot: Path | None = None,
    budget_ms: int = 8000,
    size: tuple[int, int] = (1280, 2000),
) -> str:
    """The DOM of ``url`` after its scripts ran for ``budget_ms`` of virtual time; optionally a PNG too.

    Virtual time runs timers as fast as the page allows (pausing while fetches are pending),
    so a page that polls every few seconds is rendered in well under ``budget_ms`` of real time.
    """
    browser = find_chromium()
    if browser is None:
        raise ChromiumError("no Chromium found: set EDDY_CHROMIUM or install chromium")
    budget = f"--virtual-time-budget={budget_ms}"
    dom = _run(browser, [budget, "--dump-dom"], url)
    if not dom.strip():
        raise ChromiumError(f"chromium dumped an empty DOM for {url}")
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.unlink(missing_ok=True)
        width, height = size
        _run(browser, [budget, f"--screenshot={screenshot}", f"--window-size={width},{height}"], url)
        if not screenshot.is_file():
            raise ChromiumError(f"chromium wrote no screenshot to {screenshot}")
    return dom


@dataclass
class Element:
    """One element of a dumped DOM: enough to check attributes and text without a browser driver."""

    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self) -> list[Element]:
        found = [self]
        for child in self.children:
            found.extend(child.iter())
        return found

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Element]:
        """Descendants (and self) with this tag and these exact attribute values (``data_x`` for ``data-x``)."""
        wanted = {name.replace("_", "-"): value for name, value in attrs.items()}
        return [
            el
            for el in self.iter()
            if (tag is None or el.tag == tag) and all(el.attrs.get(k) == v for k, v in wanted.items())
        ]

    def find(self, tag: str | None = None, **attrs: str) -> Element:
        found = self.find_all(tag, **attrs)
        if len(found) != 1:
            raise LookupError(f"expected one <{tag or '*'} {attrs}>, found {len(found)}")
        return found[0]


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        # Text belongs to every open element, like textContent.
        for element in self.stack:
            element.text += data


def parse_dom(html: str) -> Element:
    """The dumped DOM as a tree of :class:`Element`."""
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root
