"""Render every diagram of taskfate's docs as a reader sees it, and check it.

    python maintainer/render_diagrams.py            # check, and write PNGs to build/diagrams/
    python maintainer/render_diagrams.py --no-png   # check only (what the test suite runs)

What is rendered:

* every fenced ``mermaid`` block of ``README.md`` and ``docs/*.md``, by the
  real Mermaid in headless Chromium, in a box 880 px wide: about what
  GitHub gives a diagram in a README, and Mermaid (as GitHub runs it)
  scales a wider diagram down to that width;
* the dot form (``taskfate.fsm.diagram.dot``) of every lifecycle those docs
  draw, and Mermaid's and dot's picture of one future's path (what
  ``taskfate diagram --history`` draws), with Graphviz, shown in the same
  box, scaled down to fit when wider, as GitHub shows an image.

What is checked, on the laid-out SVG (``measure.js`` runs in the page and
leaves its measurements in the DOM; Chromium's ``--dump-dom`` hands them
over):

* no two of the things a reader tells apart overlap, or touch (closer than
  2 px, two labels read as one): edge labels, states, notes, the start and
  end markers and the title, each by the box it takes on screen (a label
  crossing another edge's line is not counted: lines are thin and labels
  have a background);
* nothing is drawn outside the svg's own box (it would be cut off);
* every piece of text is shown at least 12 px high (its computed font size
  times the scale the svg is shown at).

It also counts the lines that run through a label, state or note they
neither start nor end at (Mermaid's curved edges pass through one to four
labels of a lifecycle's diagram; the dot forms, whose labels are nodes on
their edges, through none). Those are reported, not failed: a label's
background keeps it readable, and no layout hint of Mermaid's removes them
all.

It prints one line per diagram (its minimum font size, the overlaps found,
the lines through labels) and exits 1 when any diagram fails. With PNGs (the default) each diagram is
also screenshotted at that width into ``build/diagrams/`` (git-ignored), to
be looked at.

Needs: Chromium (``chromium`` on PATH, or ``--chromium``); Mermaid's
``mermaid.min.js`` (``npm install --prefix build/mermaid mermaid@11``, or
``--mermaid FILE``); Graphviz (pygraphviz from taskfate's ``diagrams``
extra, or ``dot`` on PATH); taskfate installed from this checkout with the
``scaler`` extra.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import refresh_docs  # noqa: E402  (a sibling script, found through the line above)

ROOT = HERE.parent
WIDTH = 880  # px: about the width GitHub gives a diagram in a README
MIN_FONT_PX = 12.0
#: Two boxes closer than this (px) read as one: they count as overlapping.
GAP = 2.0
MERMAID_HINT = "npm install --prefix build/mermaid mermaid@11 (or pass --mermaid FILE)"
_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_FENCE = re.compile(r"^```mermaid\s*$")
_BEGIN = re.compile(r"^\s*<!--\s*BEGIN GENERATED ([\w-]+)")
_END = re.compile(r"^\s*<!--\s*END GENERATED ([\w-]+)")


class RenderError(Exception):
    """A tool is missing or failed; the message says which and what to do."""


@dataclass(frozen=True)
class Diagram:
    """One picture to render: ``text`` is Mermaid source or an svg."""

    name: str
    kind: str  # "mermaid" or "dot"
    origin: str
    text: str


@dataclass
class Result:
    """What was measured of one diagram."""

    diagram: Diagram
    min_font_px: float = 0.0
    overlaps: list[tuple[str, str]] = field(default_factory=list)
    clipped: list[str] = field(default_factory=list)
    crossed: list[tuple[str, str]] = field(default_factory=list)
    scale: float = 0.0
    height: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.overlaps and not self.clipped and self.min_font_px >= MIN_FONT_PX

    def line(self) -> str:
        where = f"{self.diagram.name} ({self.diagram.origin})"
        if self.error is not None:
            return f"FAIL {where}: {self.error}"
        verdict = "ok  " if self.ok else "FAIL"
        shown = "; ".join(f"{a!r} overlaps {b!r}" for a, b in self.overlaps) or "none"
        cut = f", cut off: {'; '.join(self.clipped)}" if self.clipped else ""
        crossed = f"; lines through labels {len(self.crossed)} (reported, not failed)" if self.crossed else ""
        return f"{verdict} {where}: min font {self.min_font_px:.1f} px, scale {self.scale:.2f}, overlaps {len(self.overlaps)} ({shown}){cut}{crossed}"


# -- What to render ------------------------------------------------------------


def mermaid_blocks(path: Path, relative: str) -> list[Diagram]:
    """Every fenced mermaid block of one markdown file, named after the
    generated section holding it (numbered when a section holds several)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    found: list[tuple[str, int, str]] = []
    section: str | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        if begin := _BEGIN.match(line):
            section = begin.group(1)
        elif _END.match(line):
            section = None
        elif _FENCE.match(line):
            end = next((at for at in range(index + 1, len(lines)) if lines[at].startswith("```")), None)
            if end is None:
                raise RenderError(f"{relative}:{index + 1}: a mermaid block that never closes")
            found.append((section or f"line{index + 1}", index + 1, "\n".join(lines[index + 1 : end]) + "\n"))
            index = end
        index += 1
    stem = Path(relative).stem
    counts: dict[str, int] = {}
    for name, _, _ in found:
        counts[name] = counts.get(name, 0) + 1
    seen: dict[str, int] = {}
    diagrams = []
    for name, number, text in found:
        seen[name] = seen.get(name, 0) + 1
        suffix = f"-{seen[name]}" if counts[name] > 1 else ""
        diagrams.append(Diagram(f"mm-{stem}-{name}{suffix}", "mermaid", f"{relative}:{number}", text))
    return diagrams


def documents(root: Path) -> list[str]:
    """README.md and every docs/*.md, relative to ``root``."""
    return ["README.md", *sorted(path.relative_to(root).as_posix() for path in (root / "docs").glob("*.md"))]


#: A future's path drawn as ``taskfate diagram --history`` draws it: a cancel
#: refused, asked again, and raced by the result.
SAMPLE_HISTORY = (
    ("cancel", "pending", "cancel_requested"),
    ("confirm_cancel_failed", "cancel_requested", "pending"),
    ("cancel", "pending", "cancel_requested"),
    ("result_success", "cancel_requested", "cancelled"),
)


def drawn_lifecycles(root: Path) -> list[Any]:
    """Every lifecycle the docs draw: the stock policies' and those drawn
    side by side."""
    from taskfate.fsm import lifecycle as lc

    return [lc.STOCK_LIFECYCLES[policy] for policy in lc.POLICIES] + list(refresh_docs.side_by_side(root)[1:])


def _svg(dot_text: str) -> str:
    from taskfate.client.commands.diagram import DiagramError, render

    try:
        return render(dot_text, "svg").decode("utf-8")
    except DiagramError as exc:
        raise RenderError(str(exc)) from None


def dot_diagrams(root: Path) -> list[Diagram]:
    """The dot form of every lifecycle the docs draw, and of the sample path."""
    from taskfate.fsm import diagram

    diagrams = [
        Diagram(f"dot-{_file_name(lifecycle.name)}", "dot", f"dot({lifecycle.name})", _svg(diagram.dot(lifecycle)))
        for lifecycle in drawn_lifecycles(root)
    ]
    diagrams.append(Diagram("dot-history", "dot", "dot(cancel, history)", _svg(diagram.dot("cancel", SAMPLE_HISTORY))))
    return diagrams


def history_diagrams() -> list[Diagram]:
    """Mermaid's picture of the sample path (not in the docs; the command line draws it)."""
    from taskfate.fsm import diagram

    return [Diagram("mm-history", "mermaid", "mermaid(cancel, history)", diagram.mermaid("cancel", SAMPLE_HISTORY))]


def all_diagrams(root: Path) -> list[Diagram]:
    found = [block for relative in documents(root) for block in mermaid_blocks(root / relative, relative)]
    return found + history_diagrams() + dot_diagrams(root)


def _file_name(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name)


# -- Rendering in Chromium ---------------------------------------------------------


def find_browser(given: str | None) -> str:
    for candidate in ([given] if given else [os.environ.get("CHROMIUM", ""), *_BROWSERS]):
        if candidate and (found := shutil.which(candidate)):
            return found
    raise RenderError(f"no Chromium found (tried {', '.join(_BROWSERS)}); install one or pass --chromium PATH")


def find_mermaid(given: Path | None, root: Path) -> Path:
    candidates = [given] if given else [
        Path(os.environ["MERMAID_JS"]) if os.environ.get("MERMAID_JS") else None,
        root / "build/mermaid/node_modules/mermaid/dist/mermaid.min.js",
        root / "node_modules/mermaid/dist/mermaid.min.js",
    ]
    for candidate in candidates:
        if candidate is not None and candidate.is_file():
            return candidate.resolve()
    raise RenderError(f"no mermaid.min.js found: {MERMAID_HINT}")


def page(diagrams: Sequence[Diagram], mermaid_js: Path) -> str:
    """One HTML page drawing ``diagrams`` one under the other, each in a box
    ``WIDTH`` px wide, with measure.js to measure them."""
    figures = []
    for diagram in diagrams:
        if diagram.kind == "mermaid":
            body = f'<div class="picture"></div><pre class="source">{html.escape(diagram.text)}</pre>'
        else:
            body = f'<div class="picture">{_strip_xml_prolog(diagram.text)}</div>'
        figures.append(f'<figure data-name="{html.escape(diagram.name)}" data-kind="{diagram.kind}">{body}</figure>')
    script = (HERE / "measure.js").read_text(encoding="utf-8")
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        "<style>body{margin:0;background:#fff}figure{margin:0 0 24px 0}"
        f".picture{{width:{WIDTH}px}}.picture svg{{display:block;max-width:100%;height:auto}}.source{{display:none}}</style>"
        f'<script src="{mermaid_js.as_uri()}"></script></head><body>'
        + "".join(figures)
        + f'<pre id="measure" style="display:none"></pre><script>{script}</script></body></html>'
    )


def _strip_xml_prolog(svg: str) -> str:
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def _chromium(browser: str, arguments: Sequence[str], timeout: float) -> str:
    with tempfile.TemporaryDirectory(prefix="taskfate-render-") as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=30000",
            *arguments,
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RenderError(f"running {browser} failed: {exc}") from None
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()
        raise RenderError(f"{browser} exited {done.returncode}: {detail[-1] if detail else 'no output'}")
    return done.stdout


def measure(diagrams: Sequence[Diagram], browser: str, mermaid_js: Path, work: Path) -> list[dict[str, Any]]:
    """Lay every diagram out in one page and return what measure.js found."""
    target = work / "measure.html"
    target.write_text(page(diagrams, mermaid_js), encoding="utf-8")
    dom = _chromium(browser, [f"--window-size={WIDTH},1000", "--dump-dom", target.as_uri()], timeout=180)
    found = re.search(r'<pre id="measure"[^>]*>(.*?)</pre>', dom, re.S)
    if found is None or not found.group(1).strip():
        raise RenderError("the page left no measurements (did Mermaid load?)")
    measured: list[dict[str, Any]] = json.loads(html.unescape(found.group(1)))
    return measured


def screenshot(diagram: Diagram, height: float, browser: str, mermaid_js: Path, out: Path) -> Path:
    source = out / f"{diagram.name}.html"
    source.write_text(page([diagram], mermaid_js), encoding="utf-8")
    target = out / f"{diagram.name}.png"
    _chromium(browser, [f"--window-size={WIDTH},{int(height) + 8}", f"--screenshot={target}", source.as_uri()], timeout=120)
    return target


# -- The check -------------------------------------------------------------------------


def overlapping(parts: Iterable[dict[str, Any]], gap: float = GAP) -> list[tuple[str, str]]:
    """Every pair of parts whose boxes overlap, or come closer than ``gap``
    px both ways (two labels touching read as one)."""
    boxes = list(parts)
    found = []
    for index, a in enumerate(boxes):
        for b in boxes[index + 1 :]:
            wide = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
            high = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
            if wide > -gap and high > -gap:
                found.append((f"{a['kind']} {a['text'][:40]}", f"{b['kind']} {b['text'][:40]}"))
    return found


def judge(diagram: Diagram, measured: dict[str, Any]) -> Result:
    if not measured.get("ok"):
        return Result(diagram, error=f"not drawn: {measured.get('error')}")
    sizes = [size["px"] for size in measured["sizes"]]
    if not sizes:
        return Result(diagram, error="no text found in the drawing")
    return Result(
        diagram,
        min_font_px=min(sizes),
        overlaps=overlapping(measured["parts"]),
        clipped=list(measured.get("clipped", [])),
        crossed=[tuple(pair) for pair in measured.get("crossed", [])],
        scale=measured["scale"],
        height=measured["height"],
    )


def check(diagrams: Sequence[Diagram], browser: str, mermaid_js: Path, work: Path) -> list[Result]:
    measured = {entry["name"]: entry for entry in measure(diagrams, browser, mermaid_js, work)}
    return [judge(diagram, measured.get(diagram.name, {"ok": False, "error": "not measured"})) for diagram in diagrams]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python maintainer/render_diagrams.py",
        description=f"Render the docs' diagrams at {WIDTH} px and check that no labels overlap and no text is under {MIN_FONT_PX:g} px.",
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose docs to render (default: this script's)")
    parser.add_argument("--out", type=Path, help="folder for the PNGs and pages (default: ROOT/build/diagrams)")
    parser.add_argument("--no-png", action="store_true", help="check only; write no screenshots")
    parser.add_argument("--chromium", help="the Chromium to run (default: the first of chromium, chromium-browser, google-chrome on PATH)")
    parser.add_argument("--mermaid", type=Path, help="mermaid.min.js to draw with (default: build/mermaid/node_modules/mermaid/dist/)")
    parser.add_argument("--only", action="append", metavar="NAME", help="render only the diagrams whose name contains NAME (repeatable)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    out = (args.out or root / "build/diagrams").resolve()
    try:
        browser = find_browser(args.chromium)
        mermaid_js = find_mermaid(args.mermaid, root)
        diagrams = all_diagrams(root)
        if args.only:
            diagrams = [diagram for diagram in diagrams if any(part in diagram.name for part in args.only)]
        out.mkdir(parents=True, exist_ok=True)
        results = check(diagrams, browser, mermaid_js, out)
        for result in results:
            print(result.line())
            if not args.no_png and result.error is None:
                print(f"     {screenshot(result.diagram, result.height, browser, mermaid_js, out)}")
    except (RenderError, refresh_docs.RefreshError) as exc:
        print(f"render_diagrams: {exc}", file=sys.stderr)
        return 2
    (out / "report.json").write_text(
        json.dumps(
            [
                {
                    "name": r.diagram.name,
                    "origin": r.diagram.origin,
                    "ok": r.ok,
                    "min_font_px": round(r.min_font_px, 2),
                    "overlaps": r.overlaps,
                    "clipped": r.clipped,
                    "lines_through_labels": r.crossed,
                    "error": r.error,
                }
                for r in results
            ],
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    failed = [result for result in results if not result.ok]
    print(f"{len(results) - len(failed)} of {len(results)} diagrams legible at {WIDTH} px" + (f"; failing: {', '.join(r.diagram.name for r in failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
