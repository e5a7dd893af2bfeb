"use strict";
// The binding explorer page. DATA is written by binding/explore/build.py; nothing is fetched.
// Sections: controls, the example, attention, interchange interventions, logit lens and probes,
// image twins, accuracy slices. Each render* function draws one section for the current example.

const DATA = JSON.parse(document.getElementById("data").textContent);
const V = DATA.vocab;
const RUNS = DATA.runs;
const EXAMPLES = DATA.examples;
const OUTCOME_LABEL = {positional: "positional", symbolic: "symbolic", reflexive: "reflexive",
                       no_effect: "no effect", other: "other"};
const MARKS = ["query_color", "query_shape", "assoc_shape", "assoc_item"];
const MARK_COLOUR = {query_color: "#0891b2", query_shape: "#65a30d", assoc_shape: "#ca8a04", assoc_item: "#db2777"};
const RUN_COLOUR = ["#1d4ed8", "#c2410c"];
const SVGNS = "http://www.w3.org/2000/svg";

const state = {index: 0, source: null, selected: RUNS.map(r => ({layer: r.layers - 1, head: 0}))};
let ATTENTION = null;   // Uint8Array of every example's attention, once inflated

// ---------------------------------------------------------------------------------------------
// helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

const word = t => V.words[t];
const isColour = t => t >= V.color0 && t < V.shape0;
const fmt = (x, d = 2) => (x === null || x === undefined) ? "-" : Number(x).toFixed(d);
const verdict = (pred, answer) => pred === answer ? el("span", {class: "ok", text: "\u2713"})
                                                  : el("span", {class: "bad", text: "\u2717"});
const isMistake = e => e.runs.some(r => r.prediction !== e.answer);
const current = () => EXAMPLES[state.index];
const runLabel = i => el("span", {class: `run-${i}`, text: RUNS[i].name});

async function inflate(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// attention weight of layer l, head h, from query row q to key k (k <= q), for run r of example e
function weight(e, r, l, h, q, k) {
  const t = e.tokens.length, tri = t * (t + 1) / 2;
  const at = e.runs[r].attention + (l * RUNS[r].heads + h) * tri + q * (q + 1) / 2 + k;
  return ATTENTION[at] / DATA.attention_levels;
}

// ---------------------------------------------------------------------------------------------
// controls

function buildControls() {
  const select = document.getElementById("n-select");
  for (const n of DATA.n_values) {
    const mine = EXAMPLES.filter(e => e.n === n);
    if (!mine.length) continue;
    const wrong = mine.filter(isMistake).length;
    select.append(el("option", {value: n, text: `${n} (${mine[0].split}) \u00b7 ${mine.length} examples, ${wrong} wrong`}));
  }
  select.addEventListener("change", () => show(EXAMPLES.findIndex(e => e.n === Number(select.value))));
  document.getElementById("prev").addEventListener("click", () => show((state.index - 1 + EXAMPLES.length) % EXAMPLES.length));
  document.getElementById("next").addEventListener("click", () => show((state.index + 1) % EXAMPLES.length));
  document.getElementById("mistake").addEventListener("click", showMistake);
  document.addEventListener("keydown", ev => {
    if (ev.key === "ArrowRight") document.getElementById("next").click();
    if (ev.key === "ArrowLeft") document.getElementById("prev").click();
    if (ev.key === "m") showMistake();
  });
}

function showMistake() {
  const note = document.getElementById("mistake-note");
  for (let step = 1; step <= EXAMPLES.length; step++) {
    const i = (state.index + step) % EXAMPLES.length;
    if (isMistake(EXAMPLES[i])) { note.textContent = ""; show(i); return; }
  }
  note.textContent = "no model gets any example shown here wrong";
}

function show(index) {
  state.index = index;
  state.source = null;
  renderAll();
}

function renderAll() {
  const e = current();
  document.getElementById("n-select").value = e.n;
  const same = EXAMPLES.filter(x => x.n === e.n);
  document.getElementById("position").textContent =
    `example ${same.indexOf(e) + 1} of ${same.length} at N=${e.n} (${e.split})`;
  renderExample(e);
  renderAttention(e);
  renderPatches(e);
  renderLens(e);
  renderImages(e);
  renderSlices(e);
}

// ---------------------------------------------------------------------------------------------
// the example

function renderExample(e) {
  document.getElementById("example-text").textContent = e.text;
  const box = document.getElementById("answers");
  box.replaceChildren();
  e.runs.forEach((r, i) => box.append(el("div", {class: "answer", "data-run": i},
    runLabel(i), `: model says ${word(r.prediction)} `, verdict(r.prediction, e.answer),
    r.prediction === e.answer ? "" : ` (right answer: ${word(e.answer)})`)));
}

// ---------------------------------------------------------------------------------------------
// attention: a token row, arcs for the selected strip, one strip per layer and head

function attentionGeometry(e, r) {
  const t = e.tokens.length;
  const cell = Math.max(12, Math.min(24, Math.floor(1100 / t)));
  return {t, cell, left: 64, arcs: 90, labels: 74, marks: 10, strip: 10, gap: 4,
          rows: RUNS[r].layers, heads: RUNS[r].heads};
}

function renderAttention(e) {
  const box = document.getElementById("attention-runs");
  box.replaceChildren();
  if (!ATTENTION) { box.append(el("p", {class: "note", text: "inflating the attention patterns\u2026"})); return; }
  const src = state.source === null ? e.query : state.source;
  RUNS.forEach((run, r) => {
    const head = el("h3", {}, runLabel(r), ` \u2014 from position ${src} (${word(e.tokens[src])})` +
      (state.source === null ? ", the query" : "; click the query token to go back"));
    box.append(el("div", {class: "attn-run"}, head, attentionSvg(e, r, src)));
  });
}

// the layer and head whose query row puts the most weight on the answer item (the second hop)
function answerReader(e, r) {
  let best = {layer: RUNS[r].layers - 1, head: 0, w: -1};
  for (let l = 0; l < RUNS[r].layers; l++) {
    for (let h = 0; h < RUNS[r].heads; h++) {
      const w = weight(e, r, l, h, e.query, e.marks.assoc_item);
      if (w > best.w) best = {layer: l, head: h, w};
    }
  }
  return {layer: best.layer, head: best.head};
}

function attentionSvg(e, r, src) {
  const g = attentionGeometry(e, r);
  const rowTop = g.arcs, stripTop = g.arcs + g.labels + g.marks + 6;
  const height = stripTop + g.rows * (g.heads * g.strip + g.gap);
  const svg = svgEl("svg", {width: g.left + g.t * g.cell + 10, height, "data-run": r});
  drawArcs(svg, e, r, src, g);
  drawTokens(svg, e, src, g, rowTop);
  drawStrips(svg, e, r, src, g, stripTop);
  return svg;
}

function drawArcs(svg, e, r, src, g) {
  const {layer, head} = state.selected[r];
  const x = k => g.left + (k + 0.5) * g.cell;
  svg.append(svgEl("text", {x: 2, y: 12, fill: "#6b7280"}, `L${layer} H${head}`));
  for (let k = 0; k <= src; k++) {
    const w = weight(e, r, layer, head, src, k);
    if (w < 0.04) continue;
    const lift = Math.min(g.arcs - 8, 12 + Math.abs(src - k) * 3);
    svg.append(svgEl("path", {d: `M${x(src)},${g.arcs} Q${(x(src) + x(k)) / 2},${g.arcs - lift * 2} ${x(k)},${g.arcs}`,
      fill: "none", stroke: RUN_COLOUR[r], "stroke-width": 1 + 5 * w, "stroke-opacity": 0.25 + 0.75 * w}));
  }
}

function drawTokens(svg, e, src, g, top) {
  const marked = Object.fromEntries(MARKS.map(m => [e.marks[m], m]));
  e.tokens.forEach((tok, k) => {
    const x = g.left + k * g.cell;
    const grp = svgEl("g", {class: "tok", "data-pos": k});
    grp.append(svgEl("rect", {x, y: top, width: g.cell - 1, height: g.labels, fill: k === src ? "#e0e7ff" : "#fff"}));
    if (isColour(tok)) grp.append(svgEl("rect", {x: x + 2, y: top + 2, width: g.cell - 5, height: 8, fill: V.colours[tok]}));
    grp.append(svgEl("text", {x: x + g.cell / 2 + 3, y: top + g.labels - 2,
      transform: `rotate(-90 ${x + g.cell / 2 + 3} ${top + g.labels - 2})`,
      "font-weight": k === e.query ? "bold" : "normal"}, word(tok)));
    if (marked[k]) grp.append(svgEl("rect", {x, y: top + g.labels + 1, width: g.cell - 1, height: g.marks - 2,
                                            fill: MARK_COLOUR[marked[k]]}));
    grp.append(svgEl("title", {}, `position ${k}: ${word(tok)} (click: attention from here)`));
    grp.addEventListener("click", () => { state.source = k === e.query ? null : k; renderAttention(e); });
    svg.append(grp);
  });
}

function drawStrips(svg, e, r, src, g, top) {
  for (let l = 0; l < g.rows; l++) {
    for (let h = 0; h < g.heads; h++) {
      const y = top + l * (g.heads * g.strip + g.gap) + h * g.strip;
      const sel = state.selected[r].layer === l && state.selected[r].head === h;
      const strip = svgEl("g", {class: "strip", "data-layer": l, "data-head": h});
      strip.append(svgEl("rect", {x: g.left, y, width: g.t * g.cell - 1, height: g.strip - 1, fill: "#f9fafb"}));
      strip.append(svgEl("text", {x: 2, y: y + g.strip - 2, fill: sel ? RUN_COLOUR[r] : "#374151",
                                  "font-weight": sel ? "bold" : "normal"}, `L${l} H${h}`));
      for (let k = 0; k <= src; k++) {
        const w = weight(e, r, l, h, src, k);
        const cellRect = svgEl("rect", {x: g.left + k * g.cell, y, width: g.cell - 1, height: g.strip - 1,
          fill: RUN_COLOUR[r], "fill-opacity": w, stroke: sel ? "#111827" : "none", "stroke-width": sel ? 0.5 : 0});
        cellRect.append(svgEl("title", {}, `layer ${l} head ${h}: ${src} (${word(e.tokens[src])}) -> ${k} (${word(e.tokens[k])}): ${fmt(w)}`));
        strip.append(cellRect);
      }
      strip.addEventListener("click", () => { state.selected[r] = {layer: l, head: h}; renderAttention(e); });
      svg.append(strip);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// interchange interventions

function renderPatches(e) {
  const pairBox = document.getElementById("pair"), runsBox = document.getElementById("patch-runs");
  pairBox.replaceChildren();
  runsBox.replaceChildren();
  if (!e.pair) {
    pairBox.append(el("p", {class: "note", text: "Counterfactual pairs need N \u2265 3 (three distinct slots q, j, k); " +
                                                   "choose a larger N to see the interventions."}));
    return;
  }
  const p = e.pair.predicted;
  pairBox.append(el("p", {class: "help", text: "The counterfactual: the same objects in another slot order, another " +
    "object queried, its shape bound to a fresh item. Its activation replaces the original's at the query, after each " +
    "block; the patched answer says what the query carried (binding analyze does this over many pairs)."}),
    el("pre", {id: "pair-text", text: e.pair.text}),
    el("p", {}, ...["positional", "symbolic", "reflexive", "no_effect"].flatMap(s =>
      [el("span", {class: `outcome o-${s}`, text: OUTCOME_LABEL[s]}), ` ${word(p[s])}   `])));
  e.runs.forEach((r, i) => runsBox.append(patchTable(e, r, i)));
}

function patchTable(e, r, i) {
  const a = RUNS[i].analysis, patch = r.patch;
  const rows = patch.layers.map(([tok, outcome], l) => el("tr", {},
    el("td", {text: `after block ${l}`}), el("td", {text: word(tok)}),
    el("td", {id: `patch-${i}-${l}`, "data-outcome": outcome, "data-token": tok},
       el("span", {class: `outcome o-${outcome}`, text: OUTCOME_LABEL[outcome]})),
    el("td", {}, a ? shareBar(a.proportions_by_layer[l]) : "")));
  const counted = patch.counted ? "yes" : "no: analyze counts only pairs the model answers right on both sides";
  return el("div", {},
    el("h3", {}, runLabel(i)),
    el("p", {class: "note", text: `answers the original ${word(patch.original)}, the counterfactual ` +
      `${word(patch.counterfactual)}; counted by analyze: ${counted}`}),
    el("table", {class: "patch", "data-run": i},
      el("tr", {}, el("th", {text: "patched"}), el("th", {text: "answer"}), el("th", {text: "this pair"}),
         el("th", {text: a ? `over ${a.n_pairs} pairs (analyze)` : "no analysis"})), ...rows));
}

function shareBar(props) {
  const bar = el("span", {title: Object.entries(props).map(([o, v]) => `${OUTCOME_LABEL[o]} ${fmt(v)}`).join(", ")});
  for (const o of DATA.outcomes) {
    if (props[o] > 0) bar.append(el("span", {class: `share o-${o}`, style: `width:${Math.round(props[o] * 120)}px`}));
  }
  return bar;
}

// ---------------------------------------------------------------------------------------------
// logit lens and probes

function renderLens(e) {
  const box = document.getElementById("lens-runs");
  box.replaceChildren();
  e.runs.forEach((r, i) => box.append(lensTable(e, r, i)));
}

function probeLabel(target, value) {
  if (target === "colour") return word(V.color0 + value);
  if (target === "shape") return word(V.shape0 + value);
  return `object ${value + 1}`;
}

function probeTruth(e) {
  const colour = e.tokens[e.query] - V.color0, shape = e.tokens[e.marks.query_shape] - V.shape0;
  return {colour, shape, slot: e.slot};
}

function lensTable(e, r, i) {
  const a = RUNS[i].analysis, truth = probeTruth(e), targets = r.probes ? ["colour", "shape", "slot"] : [];
  const head = el("tr", {}, el("th", {text: "read at"}), el("th", {text: "logit lens: top tokens (p)"}),
    ...targets.map(t => el("th", {text: `${t} probe`})));
  const rows = r.lens.map((top, p) => el("tr", {},
    el("td", {text: p === 0 ? "embedding" : `after ${p - 1}`}),
    el("td", {}, ...top.map(([tok, prob]) => el("span", {class: tok === e.answer ? "ok" : "", text: `${word(tok)} ${fmt(prob).replace(/^0/, "")}  `}))),
    ...targets.map(t => el("td", {title: a ? `held-out accuracy ${fmt(a.probe_accuracy[t][p])} (chance ${fmt(a.probe_chance[t])})` : ""},
      `${probeLabel(t, r.probes[t][p])} `, verdict(r.probes[t][p], truth[t])))));
  return el("div", {}, el("h3", {}, runLabel(i)), el("p", {class: "note", text: RUNS[i].probe_note}),
            el("table", {class: "lens", "data-run": i}, head, ...rows));
}

// ---------------------------------------------------------------------------------------------
// image contexts beside their text twins

function renderImages(e) {
  const section = document.getElementById("images"), box = document.getElementById("images-body");
  if (!DATA.images) { section.hidden = true; return; }
  section.hidden = false;
  box.replaceChildren();
  if (DATA.images.note) box.append(el("p", {class: "note", text: DATA.images.note}));
  const all = DATA.images.examples;
  const near = all.length ? all.reduce((b, x) => Math.abs(x.n - e.n) < Math.abs(b.n - e.n) ? x : b).n : null;
  const mine = all.filter(x => x.n === near);
  if (near !== null && near !== e.n) box.append(el("p", {class: "note", text: `N=${e.n} does not fit the canvas; nearest: N=${near}.`}));
  mine.forEach(x => box.append(imageExample(x)));
}

function imageExample(x) {
  const legend = el("div", {class: "note"}, "drawn colours: ", ...x.legend.flatMap(([tok, hex]) =>
    [el("span", {class: "swatch", style: `background:${hex}`}), `${word(tok)}  `]));
  const onImage = i => x.image_predictions[i] === null ? ["not image-trained"]
    : [word(x.image_predictions[i]), " ", verdict(x.image_predictions[i], x.answer)];
  const answers = RUNS.map((run, i) => el("div", {}, runLabel(i), ": on the image ", ...onImage(i),
    `; on the text twin ${word(x.text_predictions[i])} `, verdict(x.text_predictions[i], x.answer)));
  return el("div", {class: "img-example"}, el("img", {src: x.png, alt: "the context drawn as an image"}),
            el("div", {}, el("pre", {text: x.text}), legend, ...answers));
}

// ---------------------------------------------------------------------------------------------
// accuracy slices

function renderSlices(e) {
  const box = document.getElementById("slices-body");
  box.replaceChildren(el("p", {class: "help", text: "By N: each run's final evaluation (results.json). By query slot: " +
    `over the ${RUNS[0].slices.slot_pool_per_n} held-out examples per N this page drew (ID and OOD N), and the ID slot ` +
    "accuracy the run logged at its last evaluation (metrics.jsonl)."}), byNChart(e.n));
  const cols = el("div", {class: "cols"});
  RUNS.forEach((run, i) => cols.append(slotTable(run, i)));
  box.append(cols);
}

function byNChart(currentN) {
  const ns = DATA.n_values, w = 34, h = 120, left = 40, bar = (w - 6) / RUNS.length;
  const svg = svgEl("svg", {width: left + ns.length * w + 10, height: h + 48, id: "by-n"});
  [0, 0.5, 1].forEach(v => svg.append(svgEl("text", {x: 4, y: 14 + h * (1 - v), fill: "#6b7280"}, fmt(v, 1))));
  ns.forEach((n, c) => {
    const x = left + c * w, ood = n > DATA.id_n[1] || n < DATA.id_n[0];
    svg.append(svgEl("rect", {x, y: 10, width: w - 2, height: h, fill: n === currentN ? "#e0e7ff" : ood ? "#f9fafb" : "#f0fdf4"}));
    RUNS.forEach((run, i) => {
      const acc = run.slices.accuracy_by_n[String(n)];
      if (acc === undefined) return;
      const bh = acc * h, r = svgEl("rect", {x: x + 2 + i * bar, y: 10 + h - bh, width: bar - 1, height: bh, fill: RUN_COLOUR[i]});
      r.append(svgEl("title", {}, `${run.name}, N=${n}: ${fmt(acc, 3)}`));
      svg.append(r);
    });
    svg.append(svgEl("text", {x: x + w / 2 - 6, y: h + 24}, String(n)));
  });
  svg.append(svgEl("text", {x: left, y: h + 45, fill: "#6b7280"}, "N (green: ID, grey: OOD; highlighted: the example's)"));
  return svg;
}

function slotTable(run, i) {
  const s = run.slices, slots = Object.keys({...s.slot_id, ...s.slot_ood}).map(Number).sort((a, b) => a - b);
  const row = (label, m) => el("tr", {}, el("td", {text: label}), ...slots.map(k => el("td", {text: fmt(m && m[k], 2)})));
  return el("div", {},
    el("h3", {}, runLabel(i), ` \u2014 ID ${fmt(s.id_accuracy, 3)}, OOD ${fmt(s.ood_accuracy, 3)}`),
    s.results_note ? el("p", {class: "note", text: s.results_note}) : "",
    el("div", {style: "overflow-x:auto"}, el("table", {class: "slots"},
      el("tr", {}, el("th", {text: "query slot"}), ...slots.map(k => el("th", {text: String(k + 1)}))),
      row("ID (this page)", s.slot_id), row("OOD (this page)", s.slot_ood),
      row(`ID (logged, step ${s.slot_logged_step})`, s.slot_logged))));
}

// ---------------------------------------------------------------------------------------------
// start

function header() {
  const line = document.getElementById("runs-line");
  RUNS.forEach((run, i) => line.append(el("div", {}, runLabel(i), ` ${run.path} (seed ${run.seed}, ${run.layers} layers x ` +
    `${run.heads} heads${run.image_trained ? ", image-trained" : ""})` + (run.analysis ? `; analyze: peak layer ` +
    `${run.analysis.peak_layer}, symbolic/positional ${run.analysis.ratio_text}` : ""))));
  document.getElementById("footer").textContent = `binding explore \u00b7 git ${DATA.git_commit} \u00b7 ` +
    `${EXAMPLES.length} held-out examples \u00b7 counterfactual seed ${DATA.pair_seed}`;
}

window.addEventListener("error", ev => {
  const box = document.getElementById("errors");
  box.hidden = false;
  box.textContent += `error: ${ev.message}\n`;
});

// "#n=12&example=2" opens the second example at N = 12; otherwise the first with a counterfactual pair
function startIndex() {
  const args = new URLSearchParams(location.hash.slice(1));
  const n = Number(args.get("n")), k = Number(args.get("example") || 1);
  const at = EXAMPLES.findIndex(e => e.n === n);
  if (args.has("n") && at >= 0) return Math.min(at + k - 1, EXAMPLES.findLastIndex(e => e.n === n));
  return Math.max(0, EXAMPLES.findIndex(e => e.pair));
}

async function start() {
  header();
  buildControls();
  show(startIndex());
  ATTENTION = await inflate(document.getElementById("attention-data").textContent.trim());
  state.selected = RUNS.map((run, r) => answerReader(current(), r));
  renderAttention(current());
  document.body.dataset.readyMs = Math.round(performance.now());
  document.body.dataset.ready = "1";
}

start();
