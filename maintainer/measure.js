// Lays out every diagram of the page as a reader's browser does, then
// measures it: the box of every label, state and marker on screen, and the
// size every piece of text is shown at. render_diagrams.py reads the JSON
// this writes into <pre id="measure"> from Chromium's --dump-dom.
//
// A diagram is a <figure> holding either a Mermaid source (data-kind
// "mermaid", in a <pre class="source">) or a Graphviz svg (data-kind "dot",
// already inline). Each is drawn in a box as wide as a docs page; an svg
// wider than that is scaled down to fit, as GitHub shows both.

"use strict";

function box(element) {
  const r = element.getBoundingClientRect();
  return { x: r.left, y: r.top, w: r.width, h: r.height };
}

function ownText(element) {
  return Array.from(element.childNodes)
    .filter((node) => node.nodeType === Node.TEXT_NODE)
    .map((node) => node.textContent)
    .join("")
    .trim();
}

// Text that belongs to no state, edge or cluster: the diagram's title.
function titles(svg) {
  return Array.from(svg.querySelectorAll("text"))
    .filter((t) => t.textContent.trim() && !t.closest("g.node, g.edgeLabel, g.edge, g.cluster"))
    .map((t) => ({ kind: "title", text: t.textContent.trim(), ...box(t) }));
}

// What a reader sees as separate things, each with its box: edge labels,
// states (their label inside), the start and end markers, notes, the title.
function mermaidParts(svg) {
  const parts = [];
  svg.querySelectorAll("g.edgeLabel").forEach((g) => {
    const text = g.textContent.trim();
    const label = g.querySelector(".label") || g;
    if (text) parts.push({ kind: "label", text, owner: label.dataset.id || null, ...box(label) });
  });
  svg.querySelectorAll("g.node").forEach((g) => {
    const text = g.textContent.trim();
    const kind = g.classList.contains("note") || g.id.includes("----note") ? "note" : text ? "state" : "marker";
    parts.push({ kind, text: text || g.id, ...box(g) });
  });
  return parts.concat(titles(svg));
}

function dotParts(svg) {
  const parts = [];
  svg.querySelectorAll("g.edge").forEach((g) => {
    const texts = Array.from(g.querySelectorAll("text"));
    if (!texts.length) return;
    const boxes = texts.map(box);
    const x = Math.min(...boxes.map((b) => b.x));
    const y = Math.min(...boxes.map((b) => b.y));
    const right = Math.max(...boxes.map((b) => b.x + b.w));
    const bottom = Math.max(...boxes.map((b) => b.y + b.h));
    parts.push({ kind: "label", text: texts.map((t) => t.textContent).join(" / "), x, y, w: right - x, h: bottom - y });
  });
  svg.querySelectorAll("g.node").forEach((g) => {
    const title = g.querySelector("title");
    const name = title ? title.textContent : g.id;
    const text = Array.from(g.querySelectorAll("text")).map((t) => t.textContent).join(" ");
    const kind = name.startsWith("[note") ? "note" : name.startsWith("[*]") ? "marker" : "state";
    parts.push({ kind, text: text || name, ...box(g) });
  });
  return parts.concat(titles(svg));
}

// Every line drawn (an edge, or a note's tie to its state), as points on
// screen every few px, with the id of the edge whose label it carries.
function lines(svg, kind) {
  const found = [];
  const paths = kind === "mermaid" ? svg.querySelectorAll("g.edgePaths path, path.note-edge") : svg.querySelectorAll("g.edge path");
  paths.forEach((path) => {
    const length = path.getTotalLength();
    const matrix = path.getScreenCTM();
    if (!length || !matrix) return;
    const points = [];
    for (let at = 0; at <= length; at += 3) {
      const p = path.getPointAtLength(at).matrixTransform(matrix);
      points.push([p.x, p.y]);
    }
    const end = path.getPointAtLength(length).matrixTransform(matrix);
    points.push([end.x, end.y]);
    const title = path.closest("g.edge") && path.closest("g.edge").querySelector("title");
    found.push({ owner: path.dataset.id || null, name: title ? title.textContent : path.id, points });
  });
  return found;
}

// A line running through a box it neither starts nor ends in, and that is
// not its own label: a reader may take the label for that line's, or lose
// the line under it.
function crossings(parts, drawn) {
  const inside = (b, [x, y], margin) => x > b.x + margin && x < b.x + b.w - margin && y > b.y + margin && y < b.y + b.h - margin;
  const found = [];
  for (const line of drawn) {
    const ends = [line.points[0], line.points[line.points.length - 1]];
    for (const part of parts) {
      if (part.kind === "title") continue;
      if (part.owner && part.owner === line.owner) continue;
      if (ends.some((point) => inside(part, point, -4))) continue;
      if (line.points.some((point) => inside(part, point, 1))) found.push([line.name, `${part.kind} ${part.text.slice(0, 40)}`]);
    }
  }
  return found;
}

function fonts(svg) {
  const view = svg.viewBox && svg.viewBox.baseVal;
  const shown = svg.getBoundingClientRect();
  // How much the svg was scaled to fit the page; text inside scales with it.
  const scale = view && view.width ? shown.width / view.width : 1;
  const sizes = [];
  svg.querySelectorAll("text, tspan, span, p, div").forEach((element) => {
    const text = ownText(element);
    if (!text) return;
    const style = getComputedStyle(element);
    if (style.display === "none" || style.visibility === "hidden") return;
    sizes.push({ text, px: parseFloat(style.fontSize) * scale });
  });
  return { scale, width: shown.width, height: shown.height, sizes };
}

async function measure() {
  const figures = Array.from(document.querySelectorAll("figure"));
  const results = [];
  if (typeof mermaid !== "undefined") mermaid.initialize({ startOnLoad: false });
  for (const [index, figure] of figures.entries()) {
    const name = figure.dataset.name;
    const holder = figure.querySelector(".picture");
    try {
      if (figure.dataset.kind === "mermaid") {
        const { svg } = await mermaid.render(`diagram${index}`, figure.querySelector(".source").textContent);
        holder.innerHTML = svg;
      }
      const svg = holder.querySelector("svg");
      if (!svg) throw new Error("no svg was drawn");
      const parts = figure.dataset.kind === "mermaid" ? mermaidParts(svg) : dotParts(svg);
      const frame = box(svg);
      // Anything drawn outside the svg's own box is cut off on the page.
      const clipped = parts
        .filter((p) => p.x < frame.x - 1 || p.y < frame.y - 1 || p.x + p.w > frame.x + frame.w + 1 || p.y + p.h > frame.y + frame.h + 1)
        .map((p) => `${p.kind} ${p.text.slice(0, 40)}`);
      const crossed = crossings(parts, lines(svg, figure.dataset.kind));
      results.push({ name, ok: true, parts, clipped, crossed, ...fonts(svg) });
    } catch (error) {
      results.push({ name, ok: false, error: String(error && error.message ? error.message : error) });
    }
  }
  document.getElementById("measure").textContent = JSON.stringify(results);
}

measure();
