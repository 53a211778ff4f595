"""Writing one benchmark's section into BENCHMARKS.md, leaving the others as they are."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def write_section(title: str, section: str, *, path: Path = BENCHMARKS) -> None:
    """Replace the section headed `title` (a "## ..." line), or append it."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    body = section.rstrip("\n").splitlines()
    if title in lines:
        start = lines.index(title)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        new = [*lines[:start], *body, "", *lines[end:]]
    else:
        new = [*lines, "", *body]
    path.write_text("\n".join(new).rstrip("\n") + "\n")
