"""Where each node of a template goes: its stage (a titled group), whether it starts collapsed, and
the packing that keeps the whole graph readable on a laptop screen.

The frontends decide the first view differently: 1.32.x restores the view saved in the file,
1.58.x fits the nodes' bounds into 75% of the canvas (``DragAndScale.fitToBounds``). Both are
readable only if the graph is compact: at 1600x1000 the nodes must fit in about 1650x950 canvas
units for the fitted zoom to stay at or above 0.7, the level below which the frontend starts
drawing nodes as blank boxes. So the layout is chosen, not drawn once: every way of stacking the
stages into rows and each stage into columns is measured with the frontend's own node sizes, and
the one with the largest fitted zoom wins (ties: fewer rows, reading order kept).

The tables are by class type so that a template added later gets the same stages; a type not
listed is an error that names the table to extend, not a silent guess.
"""

from __future__ import annotations

from scripts.engine.comfy_engine import prompt_input

# (title, colour, class types). Titles are short: the group title is drawn at the group's width.
STAGES: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("1  Photo and mask", "#3f5159", frozenset({
        "Note", "LoadImage", "LoadImageMask", "LoadVideo", "GetVideoComponents", "InvertMask",
        "ImagePadForOutpaint", "BlendedLatentCrop", "ImageScale", "ImageScaleToTotalPixels", "ImageScaleBy",
        "SAM3_Detect", "SAM3_VideoTrack", "SAM3_TrackToMask"})),
    ("2  Models", "#4b4b3f", frozenset({
        "BlendedDiffusionModelLoader", "BlendedCLIPLoader", "BlendedLPIPSLoader", "CheckpointLoaderSimple",
        "UNETLoader", "DualCLIPLoader", "TripleCLIPLoader", "QuadrupleCLIPLoader", "CLIPLoader", "VAELoader",
        "LoraLoader", "LoraLoaderModelOnly", "ModelSamplingSD3", "ModelSamplingAuraFlow", "ModelSamplingFlux",
        "CFGNorm"})),
    ("3  Prompt", "#3f4b5f", frozenset({
        "CLIPTextEncode", "FluxGuidance", "ConditioningZeroOut", "ReferenceLatent", "TextEncodeQwenImageEdit",
        "TextEncodeQwenImageEditPlus", "BlendedCLIPGuidance", "BlendedExtendingAugmentation",
        "BlendedBackgroundLoss"})),
    ("4  Sample", "#4f3f5f", frozenset({
        "BlendedSampler", "BlendedLatentSampler", "BlendedLatentSamplerObject", "VAEEncode", "VAEDecode",
        "BlendedBackgroundReconstruction", "BlendedLatentStitch", "SamplerCustomAdvanced", "CFGGuider",
        "BasicGuider", "DualCFGGuider", "RandomNoise", "BasicScheduler", "KSamplerSelect", "KSampler",
        "BlendedConfineEdit"})),
    ("5  Rank and save", "#3f5f4b", frozenset({
        "BlendedRankResults", "BlendedRewardModelLoader", "BlendedRewardCriterion", "BlendedEvaluate",
        "SaveImage", "PreviewImage", "PreviewAny", "CreateVideo", "SaveVideo"})),
)

# Plumbing and expert knobs: collapsed to their title bar (a click opens them). What stays open is
# what a user touches: the photo and mask, the prompt, the model files, the sampler (steps, batch),
# the ranking (keep best) and the result.
COLLAPSED = frozenset({
    "BlendedBackgroundReconstruction", "GetVideoComponents", "InvertMask", "ConditioningZeroOut", "VAEEncode",
    "VAEDecode", "ModelSamplingSD3",
    "ModelSamplingAuraFlow", "ModelSamplingFlux", "CFGNorm", "BlendedExtendingAugmentation", "BlendedRewardModelLoader",
    "BlendedRewardCriterion", "CreateVideo",
})


# A collapsed node shows only its title, cut at about 150 px: these say which one it is, in that width.
COLLAPSED_TITLES = {
    "BlendedRewardModelLoader": "Reward: {reward_model}",
    "BlendedRewardCriterion": "Reward criterion",
    "BlendedBackgroundReconstruction": "Reconstruction",
    "BlendedExtendingAugmentation": "Augmentations",
}
# Wider than this only where the frontend's own minimum needs it (text boxes shrink, widgets do not).
MAX_NODE_WIDTH = 310


def stage_of(class_type: str) -> int:
    for i, (_, _, types) in enumerate(STAGES):
        if class_type in types:
            return i
    raise SystemExit(f"{class_type}: no stage for this node type; add it to STAGES in scripts/templates/layout.py")


# Text encoders keep their class's title ("CLIP Text Encode (Prompt)" twice) unless renamed by what
# they feed: the sampler's positive, or its negative where that is an encoder of its own (not the
# positive's ConditioningZeroOut, as Flux and Z-Image have).
PROMPT_TITLES = {"positive": "Prompt", "negative": "Negative prompt"}
TEXT_ENCODERS = frozenset({"CLIPTextEncode", "TextEncodeQwenImageEdit", "TextEncodeQwenImageEditPlus"})
# The encoder a SAM3 node reads holds what to find, not the edit (ComfyUI 0.33+ templates).
FIND_TITLE, FINDERS = "What to find", frozenset({"SAM3_Detect", "SAM3_VideoTrack"})


def prompt_titles(api: dict) -> dict[str, str]:
    """Node id -> "Prompt" / "Negative prompt" for the text encoders upstream of a sampler's inputs, and
    "What to find" for the one a SAM3 node reads."""
    titles = {}
    for role, title in PROMPT_TITLES.items():
        try:
            node, _ = prompt_input(api, role)
        except ValueError:
            continue
        key = next(k for k, n in api.items() if n is node)
        if node["class_type"] in TEXT_ENCODERS and key not in titles:
            titles[key] = title
    for node in api.values():
        link = node["inputs"].get("conditioning") if node["class_type"] in FINDERS else None
        if isinstance(link, list) and api[link[0]]["class_type"] in TEXT_ENCODERS:
            titles[link[0]] = FIND_TITLE
    return titles


def plan(api: dict) -> dict:
    """What LAYOUT_JS needs: each node's stage and collapsed flag, and the stages' titles and colours."""
    return {
        "stage": {k: stage_of(v["class_type"]) for k, v in api.items()},
        "collapsed": sorted(k for k, v in api.items() if v["class_type"] in COLLAPSED),
        "titles": {**{k: COLLAPSED_TITLES[v["class_type"]].format(**v["inputs"]) for k, v in api.items()
                      if v["class_type"] in COLLAPSED_TITLES}, **prompt_titles(api)},
        "max_width": MAX_NODE_WIDTH,
        "stages": [[title, colour] for title, colour, _ in STAGES],
    }


# The canvas area not covered by the frontend's own panels and floating bars (tabs, sidebar, run
# bar, minimap, zoom controls), found the way a user sees it: where ``elementFromPoint`` is the canvas.
# First scan lines across the window find the panels at the edges; then each floating panel left
# inside is cut off by the side that keeps the larger area. [x0, y0, x1, y1], CSS px.
VISIBLE_JS = """() => {
  const el = app.canvas.canvas, W = window.innerWidth, H = window.innerHeight, S = 16;
  const hit = (x, y) => document.elementFromPoint(x, y) === el;
  let x0 = 0, y0 = 0, x1 = W, y1 = H;
  for (const f of [0.3, 0.5, 0.7]) {
    const y = Math.round(H * f), x = Math.round(W * f);
    let a = 0; while (a < W / 2 && !hit(a, y)) a++; x0 = Math.max(x0, a);
    let b = W - 1; while (b > W / 2 && !hit(b, y)) b--; x1 = Math.min(x1, b + 1);
    let c = 0; while (c < H / 2 && !hit(x, c)) c++; y0 = Math.max(y0, c);
    let d = H - 1; while (d > H / 2 && !hit(x, d)) d--; y1 = Math.min(y1, d + 1);
  }
  // What covers the rest: for each covered grid point, the outermost element on it that is not an
  // ancestor of the canvas and smaller than an eighth of the window (a whole floating bar or panel,
  // not the full-window layers they sit in).
  const panels = new Set();
  for (let y = y0 + S / 2; y < y1; y += S) for (let x = x0 + S / 2; x < x1; x += S) {
    let e = document.elementFromPoint(x, y);
    if (!e || e === el) continue;
    const small = (n) => { const r = n.getBoundingClientRect(); return r.width * r.height < W * H / 8; };
    while (e.parentElement && !e.parentElement.contains(el) && small(e.parentElement)) e = e.parentElement;
    panels.add(e);
  }
  const area = (r) => r.width * r.height;
  const rects = [...panels].map((e) => e.getBoundingClientRect()).sort((a, b) => area(b) - area(a));
  for (const r of rects) {
    if (r.right <= x0 || r.left >= x1 || r.bottom <= y0 || r.top >= y1) continue;
    const cuts = [[Math.ceil(r.right), y0, x1, y1], [x0, Math.ceil(r.bottom), x1, y1], [x0, y0, Math.floor(r.left), y1],
                  [x0, y0, x1, Math.floor(r.top)]];
    [x0, y0, x1, y1] = cuts.reduce((a, b) => ((b[2] - b[0]) * (b[3] - b[1]) > (a[2] - a[0]) * (a[3] - a[1]) ? b : a));
  }
  return [x0, y0, x1, y1];
}"""

# Lays the graph out by stages (see the module docstring) and adds the groups and the note.
# Arguments: the plan, the note's text, [visible width, visible height] in CSS pixels.
LAYOUT_JS = """([plan, note, [VW, VH]]) => {
  // Custom nodes carry a source badge one title height above their title: rows leave room for it.
  const T = LiteGraph.NODE_TITLE_HEIGHT, GAP = 16, PAD = 10, GROUP_TITLE = 34 + T, STAGE_GAP = 28;
  const ROW = GAP + T;
  const graph = app.graph;
  for (const g of [...(graph._groups ?? graph.groups ?? [])]) graph.remove(g);
  const noteNode = LiteGraph.createNode("Note");
  noteNode.widgets[0].value = note;
  // Tall enough for the whole text in the note's monospace box (wrapped at its width).
  const NOTE_W = 330, cpl = Math.floor((NOTE_W - 24) / 6.05);
  const lines = note.split("\\n").reduce((k, l) => k + Math.max(1, Math.ceil(l.length / cpl)), 0);
  noteNode.size = [NOTE_W, 44 + 13 * lines];
  noteNode.title = "Read me first";
  graph.add(noteNode);
  const stageOf = new Map(Object.entries(plan.stage).map(([id, s]) => [+id, s]));
  stageOf.set(+noteNode.id, 0);
  for (const [id, title] of Object.entries(plan.titles)) graph.getNodeById(+id).title = title;
  for (const n of graph.nodes) if (n.size[0] > plan.max_width) n.size[0] = Math.max(n.computeSize()[0], plan.max_width);
  for (const id of plan.collapsed) { const n = graph.getNodeById(+id); if (!n.flags.collapsed) n.collapse(true); }
  // A collapsed node's width is measured while it is drawn at full detail: draw each once, alone, on screen.
  const ds = app.canvas.ds, keep = [ds.scale, [...ds.offset]];
  ds.scale = 1; ds.offset = [0, 0];
  const away = graph.nodes.map((n) => [n, [...n.pos]]);
  graph.nodes.forEach((n) => { n.pos = [-1e5, -1e5]; });
  for (const [n] of away) if (n.flags.collapsed) { n.pos = [200, 200]; app.canvas.draw(true, true); n.pos = [-1e5, -1e5]; }
  for (const [n, pos] of away) n.pos = pos;
  [ds.scale, ds.offset] = keep;
  const box = (n) => { const r = n.boundingRect; return [Math.ceil(r[2]), Math.ceil(r[3])]; };

  // Within a stage: by longest path from a source (the order data flows), note first, collapsed last.
  const depth = new Map();
  const d = (n) => {
    if (!depth.has(n.id)) {
      let v = 0;
      (n.inputs ?? []).forEach((_, i) => { const s = n.getInputNode(i); if (s) v = Math.max(v, d(s) + 1); });
      depth.set(n.id, v);
    }
    return depth.get(n.id);
  };
  const stages = plan.stages.map(() => []);
  for (const n of graph.nodes) stages[stageOf.get(+n.id)].push(n);  // ids are strings in 1.48+ (loadApiJson)
  stages.forEach((s) => s.sort((a, b) => (a === noteNode ? -1 : b === noteNode ? 1 : 0)
    || (!!a.flags.collapsed - !!b.flags.collapsed) || d(a) - d(b) || a.id - b.id));
  const used = stages.map((s, i) => [s, i]).filter(([s]) => s.length);

  // A stage in c columns: the nodes in order, cut where the tallest column is lowest.
  const height = (col) => col.reduce((h, n) => h + box(n)[1] + ROW, -ROW);
  const splits = (nodes, c) => {
    if (c === 1) return [[nodes]];
    const out = [];
    for (let i = 1; i <= nodes.length - c + 1; i++)
      for (const rest of splits(nodes.slice(i), c - 1)) out.push([nodes.slice(0, i), ...rest]);
    return out;
  };
  const columns = (nodes, c) => {
    const cols = splits(nodes, c).reduce((a, b) => (Math.max(...b.map(height)) < Math.max(...a.map(height)) ? b : a));
    const w = cols.map((col) => Math.max(...col.map((n) => box(n)[0])));
    return {cols, w, width: w.reduce((a, b) => a + b, 0) + GAP * (cols.length - 1) + 2 * PAD,
            height: Math.max(...cols.map(height)) + 2 * PAD + GROUP_TITLE};
  };
  const options = used.map(([s]) => [1, 2, 3].filter((c) => c <= s.length).map((c) => columns(s, c)));
  // The stages in reading order, cut into runs: the runs are rows (stages side by side) or columns
  // (stages stacked). Every cut, both ways, every column count per stage; the best fitted zoom wins.
  let best = null;
  const n = used.length;
  for (const across of [true, false]) {
    for (let mask = 0; mask < 1 << (n - 1); mask++) {
      const lines = [[0]];
      for (let i = 1; i < n; i++) (mask >> (i - 1)) & 1 ? lines.push([i]) : lines[lines.length - 1].push(i);
      const pick = new Array(n).fill(0);
      const rec = (i) => {
        if (i === n) {
          const o = (j) => options[j][pick[j]];
          // along: the run's extent in its own direction; thick: its extent across.
          const along = lines.map((l) => l.reduce((a, j) => a + (across ? o(j).width : o(j).height), 0) + STAGE_GAP * (l.length - 1));
          const thick = lines.map((l) => Math.max(...l.map((j) => (across ? o(j).height : o(j).width))));
          const A = Math.max(...along), B = thick.reduce((a, b) => a + b, 0) + STAGE_GAP * (lines.length - 1);
          const [W, H] = across ? [A, B] : [B, A];
          const scale = Math.min(VW / W, VH / H);
          if (!best || scale > best.scale + 1e-6) best = {scale, across, lines: lines.map((l) => [...l]), pick: [...pick], thick};
          return;
        }
        for (let c = 0; c < options[i].length; c++) { pick[i] = c; rec(i + 1); }
      };
      rec(0);
    }
  }
  let offset = 0;
  best.lines.forEach((line, r) => {
    let along = 0;
    for (const j of line) {
      const o = options[j][best.pick[j]], [title, colour] = plan.stages[used[j][1]];
      const [x, y] = best.across ? [along, offset] : [offset, along];
      const group = new LiteGraph.LGraphGroup(title);
      // Groups of a run share its thickness, so the runs read as rows or columns.
      group.pos = [x, y]; group.size = best.across ? [o.width, best.thick[r]] : [best.thick[r], o.height];
      group.color = colour;
      graph.add(group);
      let cx = x + PAD;
      o.cols.forEach((col, k) => {
        let cy = y + GROUP_TITLE + PAD;
        for (const node of col) { node.pos = [cx, cy + T]; cy += box(node)[1] + ROW; }
        cx += o.w[k] + GAP;
      });
      along += (best.across ? o.width : o.height) + STAGE_GAP;
    }
    offset += best.thick[r] + STAGE_GAP;
  });
  graph.setDirtyCanvas(true, true);
  return {scale: best.scale, lines: best.lines.length, across: best.across};
}"""  # noqa: E501

# The saved first view (extra.ds, which 1.32.x restores): the groups' bounds centred in the visible
# area at the largest zoom up to 1 that shows all of them.
FIT_JS = """([x0v, y0v, x1v, y1v]) => {
  const c = app.canvas, pad = 16;
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  // The groups hold every node (a collapsed node's boundingRect is only refreshed when it is drawn).
  const rects = (app.graph._groups ?? app.graph.groups).map((g) => [...g.pos, ...g.size]);
  for (const [x, y, w, h] of rects) { x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x + w); y1 = Math.max(y1, y + h); }
  const w = x1v - x0v - 2 * pad, h = y1v - y0v - 2 * pad;
  const s = Math.min(w / (x1 - x0), h / (y1 - y0), 1);
  c.ds.scale = s;
  c.ds.offset = [(x0v + pad + (w - s * (x1 - x0)) / 2) / s - x0, (y0v + pad + (h - s * (y1 - y0)) / 2) / s - y0];
  c.setDirty(true, true);
  return s;
}"""  # noqa: E501
