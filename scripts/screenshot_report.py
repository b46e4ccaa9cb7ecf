"""Render an HTML report (or a results JSON, rendered first) to a PNG with headless Chromium.

    python scripts/screenshot_report.py report.html -o report.png
    python scripts/screenshot_report.py results.json -o report.png --height 5000

Chromium runs with a fresh throw-away profile, no GPU, no sandbox and no background networking;
the report itself is self-contained, so nothing is fetched. Exit status 0 only when a PNG was
written; otherwise the reason goes to stderr.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def find_chromium(explicit: str | None = None) -> str | None:
    for candidate in [explicit] if explicit else CHROMIUM_CANDIDATES:
        found = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if found:
            return found
    return None


def screenshot(
    html: Path,
    png: Path,
    *,
    width: int = 1400,
    height: int = 3000,
    chromium: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Write ``png``, a ``width`` x ``height`` screenshot of the top of ``html``; returns its
    path."""
    binary = find_chromium(chromium)
    if binary is None:
        raise RuntimeError("no Chromium found; pass --chromium PATH")
    html, png = Path(html).resolve(), Path(png).resolve()
    if not html.is_file():
        raise RuntimeError(f"no such report: {html}")
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="screenshot-profile-") as profile:
        command = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={png}",
            html.as_uri(),
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, cwd=profile
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"Chromium did not finish within {timeout:g} s") from None
    if not png.is_file() or png.read_bytes()[:8] != PNG_SIGNATURE:
        tail = (done.stderr or done.stdout or "").strip().splitlines()[-5:]
        raise RuntimeError(f"Chromium (exit {done.returncode}) wrote no PNG: " + " | ".join(tail))
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "report", type=Path, help="an HTML report, or a results JSON to render first"
    )
    parser.add_argument(
        "-o", "--output", type=Path, help="PNG to write (default: next to the report)"
    )
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument(
        "--chromium", help="the browser binary (default: /usr/bin/chromium or on PATH)"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for Chromium")
    args = parser.parse_args(argv)
    output = args.output or args.report.with_suffix(".png")
    try:
        with tempfile.TemporaryDirectory(prefix="screenshot-report-") as scratch:
            html = args.report
            if args.report.suffix.lower() == ".json":
                import json

                from safetycheck.report.html import write_html

                html = Path(scratch) / "report.html"
                write_html(html, json.loads(args.report.read_text(encoding="utf-8")))
            png = screenshot(
                html,
                output,
                width=args.width,
                height=args.height,
                chromium=args.chromium,
                timeout=args.timeout,
            )
    except (RuntimeError, OSError, ValueError) as error:
        print(f"screenshot_report: {error}", file=sys.stderr)
        return 1
    print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
