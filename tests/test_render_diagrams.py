"""The docs' diagrams, rendered as a reader's browser renders them, are legible.

``maintainer/render_diagrams.py`` draws every Mermaid block of README.md and
docs/*.md with the real Mermaid in headless Chromium at 880 px, and every
dot form with Graphviz, and measures the laid-out SVG: no two labels,
states, notes or markers overlap or touch, nothing is cut off, and no text is
under 12 px. The measuring needs Chromium and Mermaid's mermaid.min.js; the
tests that render skip, saying which is missing, where they are not
installed. The rest check the script's own parts without a browser.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import render_diagrams as render

ROOT = Path(__file__).resolve().parents[1]


def _part(kind, text, x, y, w, h):
    return {"kind": kind, "text": text, "x": x, "y": y, "w": w, "h": h}


def test_boxes_that_overlap_or_touch_are_reported_and_apart_ones_are_not():
    a = _part("label", "a", 0, 0, 10, 10)
    assert render.overlapping([a, _part("label", "b", 5, 5, 10, 10)]) == [("label a", "label b")]
    assert render.overlapping([a, _part("state", "c", 11, 0, 10, 10)]) == [("label a", "state c")]  # 1 px apart: touching
    assert render.overlapping([a, _part("state", "d", 13, 0, 10, 10)]) == []
    assert render.overlapping([a, _part("state", "e", 5, 20, 10, 10)]) == []


def test_a_diagram_passes_only_without_overlaps_cut_off_parts_or_small_text():
    diagram = render.Diagram("x", "mermaid", "here", "")
    measured = {"ok": True, "parts": [], "clipped": [], "sizes": [{"text": "t", "px": 12.0}], "scale": 1.0, "height": 10}
    assert render.judge(diagram, measured).ok
    assert not render.judge(diagram, {**measured, "sizes": [{"text": "t", "px": 11.9}]}).ok
    assert not render.judge(diagram, {**measured, "clipped": ["note n"]}).ok
    overlapping = [_part("label", "a", 0, 0, 10, 10), _part("label", "b", 0, 0, 10, 10)]
    assert not render.judge(diagram, {**measured, "parts": overlapping}).ok
    failed = render.judge(diagram, {"ok": False, "error": "Parse error"})
    assert not failed.ok and "Parse error" in failed.line()


def test_every_mermaid_block_of_the_docs_is_found_and_named_after_its_section(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "intro\n```mermaid\nstateDiagram-v2\n  a --> b\n```\n"
        "<!-- BEGIN GENERATED two: x -->\n```mermaid\nA\n```\n```mermaid\nB\n```\n<!-- END GENERATED two -->\n"
        "```python\nnot a diagram\n```\n"
    )
    found = render.mermaid_blocks(page, "docs/page.md")
    assert [(d.name, d.origin, d.text) for d in found] == [
        ("mm-page-line2", "docs/page.md:2", "stateDiagram-v2\n  a --> b\n"),
        ("mm-page-two-1", "docs/page.md:7", "A\n"),
        ("mm-page-two-2", "docs/page.md:10", "B\n"),
    ]
    in_docs = [d.name for relative in render.documents(ROOT) for d in render.mermaid_blocks(ROOT / relative, relative)]
    assert "mm-README-readme-diagram" in in_docs and "mm-transport-scheduler-diagram" in in_docs
    assert len(in_docs) == len(set(in_docs)) == sum((ROOT / r).read_text().count("```mermaid") for r in render.documents(ROOT))


def _tools():
    try:
        browser = render.find_browser(None)
    except render.RenderError as exc:
        pytest.skip(f"no headless browser to render with: {exc}")
    try:
        mermaid_js = render.find_mermaid(None, ROOT)
    except render.RenderError as exc:
        pytest.skip(f"Mermaid is not installed here: {exc}")
    return browser, mermaid_js


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_diagram_of_the_docs_is_legible_at_docs_width(tmp_path):
    browser, mermaid_js = _tools()
    try:
        diagrams = render.all_diagrams(ROOT)
    except render.RenderError as exc:
        pytest.skip(f"Graphviz cannot render the dot forms here: {exc}")
    results = render.check(diagrams, browser, mermaid_js, tmp_path)
    assert {result.diagram.kind for result in results} == {"mermaid", "dot"}
    failing = [result.line() for result in results if not result.ok]
    assert not failing, "\n".join(failing)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_check_catches_crowded_and_shrunken_diagrams(tmp_path):
    browser, mermaid_js = _tools()
    loop = "a rather long label on a loop<br>and another line<br>and a third one"
    crowded = f"stateDiagram-v2\n  direction LR\n  a --> b: one\n  b --> b: {loop}\n  b --> c: two\n  c --> c: {loop}\n  c --> [*]\n"
    chain = "stateDiagram-v2\n  direction LR\n" + "".join(f"  s{i} --> s{i + 1}: a label long enough to wrap {i}\n" for i in range(9))
    drawn = [render.Diagram("crowded", "mermaid", "test", crowded), render.Diagram("chain", "mermaid", "test", chain)]
    crowded_result, chain_result = render.check(drawn, browser, mermaid_js, tmp_path)
    assert crowded_result.overlaps and not crowded_result.ok
    assert chain_result.min_font_px < render.MIN_FONT_PX and not chain_result.ok
