/**
 * The diagram of a pipeline graph as standalone SVG: stages as boxes in
 * layers, references as labelled edges, loop bodies drawn inside their loop.
 *
 * @module
 */

import { escapeXml, r, svgOpen, textWidth } from "./_svg.ts";

/**
 * A stage of the outline the runner writes to `manifest.json` (`outline`):
 * the validated graph, references resolved to `{stage, output}`.
 */
interface StageConfig {
  use?: unknown;
  in?: unknown;
  loop?: { episodes?: unknown; carry?: unknown; stages?: unknown };
}

/** Options of {@linkcode graphSvg}. */
export interface GraphSvgOptions {
  /** Layers run left to right (`"LR"`, default) or top to bottom (`"TB"`). */
  direction?: "LR" | "TB";
  /** Status per top-level stage (from `manifest.json`): colours the boxes. */
  status?: Record<string, string>;
}

const STATUS_COLOURS: Record<string, { fill: string; stroke: string }> = {
  done: { fill: "#e6f4ea", stroke: "#3c9a5f" },
  cached: { fill: "#e3effb", stroke: "#3b7dd8" },
  failed: { fill: "#fdecea", stroke: "#d64545" },
  interrupted: { fill: "#fff4e5", stroke: "#e08a1e" },
  running: { fill: "#fff8d6", stroke: "#c9a227" },
  pending: { fill: "#fff8d6", stroke: "#c9a227" },
};
const DEFAULT_COLOURS = { fill: "#f5f7fa", stroke: "#8a94a6" };

interface Box {
  id: string;
  /** `dummy`: an invisible point that a long edge passes through. */
  kind: "stage" | "loop" | "carry" | "dummy";
  title: string;
  subtitle: string;
  w: number;
  h: number;
  x: number;
  y: number;
  inner?: Level;
}

interface Edge {
  from: string;
  to: string;
  label: string;
  /** A carried value going back to the start of a loop body. */
  back?: boolean;
  /** Dummy boxes the edge passes through, one per layer it skips. */
  via?: string[];
}

interface Level {
  boxes: Box[];
  edges: Edge[];
  width: number;
  height: number;
}

/**
 * A reference of the outline: the runner parsed and resolved it already
 * (pipeline/graph.ts), so this only checks the JSON read back from
 * `manifest.json`. Undefined for anything else (a broken or older manifest).
 */
function outlineRef(value: unknown): { stage: string; output: string } | undefined {
  const ref = asRecord(value);
  return typeof ref.stage === "string" && typeof ref.output === "string"
    ? { stage: ref.stage, output: ref.output }
    : undefined;
}

function asRecord(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? value as Record<string, unknown>
    : {};
}

/** Every input reference of a body (recursively), as [port, ref] pairs. */
function refsOf(stages: Record<string, unknown>): Array<{ stage: string; output: string }> {
  const out: Array<{ stage: string; output: string }> = [];
  for (const raw of Object.values(stages)) {
    const stage = asRecord(raw) as StageConfig;
    for (const value of Object.values(asRecord(stage.in))) {
      const ref = outlineRef(value);
      if (ref) out.push(ref);
    }
    if (stage.loop) {
      for (const carry of Object.values(asRecord(stage.loop.carry))) {
        const ref = outlineRef(asRecord(carry).init);
        if (ref) out.push(ref);
      }
      out.push(...refsOf(asRecord(stage.loop.stages)));
    }
  }
  return out;
}

function edgeLabel(output: string, port: string): string {
  return output === port ? output : `${output} → ${port}`;
}

/** Lays out one level of stages (a graph, or a loop body) in layers. */
function layoutLevel(
  stages: Record<string, unknown>,
  direction: "LR" | "TB",
  loopName?: string,
  carry?: Record<string, unknown>,
): Level {
  const boxes: Box[] = [];
  const edges: Edge[] = [];
  const names = new Set(Object.keys(stages));
  const carryId = loopName !== undefined ? `${loopName}/carry` : "";
  if (loopName !== undefined) {
    const carried = Object.keys(carry ?? {});
    const title = "carry";
    const subtitle = carried.join(", ") || "(nothing)";
    boxes.push({
      id: carryId,
      kind: "carry",
      title,
      subtitle,
      w: Math.max(textWidth(title, 12), textWidth(subtitle, 11)) + 28,
      h: 40,
      x: 0,
      y: 0,
    });
  }
  const addEdge = (from: string, to: string, label: string, back = false) => {
    const same = edges.find((e) => e.from === from && e.to === to && e.back === back);
    if (same) {
      if (!same.label.split(", ").includes(label)) same.label += `, ${label}`;
    } else edges.push({ from, to, label, back });
  };
  for (const [name, raw] of Object.entries(stages)) {
    const stage = asRecord(raw) as StageConfig;
    if (stage.loop) {
      const loop = stage.loop;
      const body = asRecord(loop.stages);
      const inner = layoutLevel(body, direction, name, asRecord(loop.carry));
      const episodes = typeof loop.episodes === "number" ? ` × ${loop.episodes}` : "";
      const title = `${name}: loop${episodes}`;
      boxes.push({
        id: name,
        kind: "loop",
        title,
        subtitle: "",
        w: Math.max(inner.width + 24, textWidth(title, 13) + 24),
        h: inner.height + 24 + 22,
        x: 0,
        y: 0,
        inner,
      });
      // The loop reads its carry inits and whatever outer stage its body reads.
      const bodyNames = new Set(Object.keys(body));
      for (const [carryName, carryValue] of Object.entries(asRecord(loop.carry))) {
        const init = outlineRef(asRecord(carryValue).init);
        if (init && names.has(init.stage)) {
          addEdge(init.stage, name, edgeLabel(init.output, carryName));
        }
      }
      for (const ref of refsOf(body)) {
        if (!bodyNames.has(ref.stage) && ref.stage !== name && names.has(ref.stage)) {
          addEdge(ref.stage, name, ref.output);
        }
      }
    } else {
      const title = name;
      const subtitle = typeof stage.use === "string" ? truncate(stage.use, 32) : "";
      boxes.push({
        id: name,
        kind: "stage",
        title,
        subtitle,
        w: Math.max(textWidth(title, 13), textWidth(subtitle, 11)) + 28,
        h: subtitle ? 42 : 30,
        x: 0,
        y: 0,
      });
      for (const [port, value] of Object.entries(asRecord(stage.in))) {
        const ref = outlineRef(value);
        if (!ref) continue;
        if (names.has(ref.stage) && ref.stage !== name) {
          addEdge(ref.stage, name, edgeLabel(ref.output, port));
        } else if (loopName !== undefined && ref.stage === loopName) {
          addEdge(carryId, name, edgeLabel(ref.output, port));
        }
      }
    }
  }
  if (loopName !== undefined) {
    for (const [carryName, carryValue] of Object.entries(carry ?? {})) {
      const next = outlineRef(asRecord(carryValue).next);
      if (next && names.has(next.stage)) addEdge(next.stage, carryId, carryName, true);
    }
  }

  // Layer = longest path from a source (Sugiyama et al. 1981, "Methods for visual
  // understanding of hierarchical system structures").
  const byId = new Map(boxes.map((b) => [b.id, b]));
  const forward = edges.filter((e) => !e.back && byId.has(e.from) && byId.has(e.to));
  const layer = new Map<string, number>();
  const visiting = new Set<string>();
  const layerOf = (id: string): number => {
    const known = layer.get(id);
    if (known !== undefined) return known;
    if (visiting.has(id)) return 0; // A cycle (the runner rejects these): break it anywhere.
    visiting.add(id);
    const preds = forward.filter((e) => e.to === id).map((e) => layerOf(e.from) + 1);
    const value = Math.max(0, ...preds);
    visiting.delete(id);
    layer.set(id, value);
    return value;
  };
  for (const box of boxes) layerOf(box.id);
  // An edge that skips layers runs through a small invisible box in each layer it
  // crosses, so it is routed around the stages in between instead of through them.
  const links: Array<[string, string]> = [];
  forward.forEach((edge, e) => {
    const from = layer.get(edge.from)!;
    const to = layer.get(edge.to)!;
    edge.via = [];
    let previous = edge.from;
    for (let l = from + 1; l < to; l++) {
      const id = `#${e}.${l}`;
      boxes.push({ id, kind: "dummy", title: "", subtitle: "", w: 10, h: 10, x: 0, y: 0 });
      layer.set(id, l);
      edge.via.push(id);
      links.push([previous, id]);
      previous = id;
    }
    links.push([previous, edge.to]);
  });
  const layerCount = Math.max(0, ...layer.values()) + 1;
  const layers: Box[][] = Array.from({ length: layerCount }, () => []);
  for (const box of boxes) layers[layer.get(box.id)!].push(box);

  // Order within layers: barycentre sweeps down and up to reduce crossings.
  const order = new Map<string, number>();
  layers.forEach((boxesOfLayer) => boxesOfLayer.forEach((b, i) => order.set(b.id, i)));
  const sortLayer = (l: number, neighbours: (id: string) => string[]) => {
    layers[l] = layers[l]
      .map((b, i) => {
        const positions = neighbours(b.id).map((n) => order.get(n) ?? 0);
        const centre = positions.length > 0
          ? positions.reduce((a, c) => a + c, 0) / positions.length
          : i;
        return { b, i, centre };
      })
      .sort((a, z) => a.centre - z.centre || a.i - z.i)
      .map((e) => e.b);
    layers[l].forEach((b, i) => order.set(b.id, i));
  };
  const preds = (id: string) => links.filter(([, to]) => to === id).map(([from]) => from);
  const succs = (id: string) => links.filter(([from]) => from === id).map(([, to]) => to);
  for (let sweep = 0; sweep < 3; sweep++) {
    for (let l = 1; l < layerCount; l++) sortLayer(l, preds);
    for (let l = layerCount - 2; l >= 0; l--) sortLayer(l, succs);
  }
  for (let l = 1; l < layerCount; l++) sortLayer(l, preds);

  // Positions: along = the direction of flow, across = perpendicular to it.
  const gapAlong = 56;
  const gapAcross = 22;
  // Left to right, labels lie along the gaps between layers: make each gap fit its labels.
  const gaps = layers.map(() => gapAlong);
  if (direction === "LR") {
    for (const edge of forward) {
      const l = layer.get(edge.from)!;
      gaps[l] = Math.max(gaps[l], textWidth(edge.label, 10) + 24);
    }
  }
  const along = (b: Box) => (direction === "LR" ? b.w : b.h);
  const across = (b: Box) => (direction === "LR" ? b.h : b.w);
  const layerAcross = layers.map((boxesOfLayer) =>
    boxesOfLayer.reduce((sum, b) => sum + across(b), 0) + gapAcross * (boxesOfLayer.length - 1)
  );
  const maxAcross = Math.max(0, ...layerAcross);
  let position = 0;
  layers.forEach((boxesOfLayer, l) => {
    const size = Math.max(0, ...boxesOfLayer.map(along));
    let offset = (maxAcross - layerAcross[l]) / 2;
    for (const b of boxesOfLayer) {
      // A long edge runs straight through the whole depth of a layer it crosses.
      if (b.kind === "dummy") {
        if (direction === "LR") b.w = size;
        else b.h = size;
      }
      const a = position + (size - along(b)) / 2;
      if (direction === "LR") {
        b.x = a;
        b.y = offset;
      } else {
        b.x = offset;
        b.y = a;
      }
      offset += across(b) + gapAcross;
    }
    position += size + gaps[l];
  });
  const extent = Math.max(0, position - gaps[layerCount - 1]);
  // Back edges (carried values) run around the far side: leave room for them.
  const backRoom = edges.some((e) => e.back) ? 34 : 0;
  return {
    boxes,
    edges,
    width: direction === "LR" ? extent : maxAcross + backRoom,
    height: direction === "LR" ? maxAcross + backRoom : extent,
  };
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `…${text.slice(text.length - max + 1)}`;
}

/** Arrowhead at (x, y) pointing along (dx, dy). */
function arrowHead(x: number, y: number, dx: number, dy: number, color: string): string {
  const length = Math.hypot(dx, dy) || 1;
  const ux = dx / length;
  const uy = dy / length;
  const size = 7;
  const bx = x - ux * size;
  const by = y - uy * size;
  return `<path d="M${r(x)},${r(y)}L${r(bx - uy * size * 0.45)},${r(by + ux * size * 0.45)}L${
    r(bx + uy * size * 0.45)
  },${r(by - ux * size * 0.45)}Z" fill="${color}"/>`;
}

function drawLevel(
  level: Level,
  ox: number,
  oy: number,
  direction: "LR" | "TB",
  status: Record<string, string>,
  top: boolean,
  parts: string[],
): void {
  const byId = new Map(level.boxes.map((b) => [b.id, b]));
  for (const box of level.boxes) {
    if (box.kind === "dummy") continue;
    const x = ox + box.x;
    const y = oy + box.y;
    const colours = (top ? STATUS_COLOURS[status[box.id]] : undefined) ?? DEFAULT_COLOURS;
    if (box.kind === "loop") {
      parts.push(
        `<g class="loop" data-stage="${escapeXml(box.id)}"><rect x="${r(x)}" y="${r(y)}" width="${
          r(box.w)
        }" height="${r(box.h)}" rx="10" fill="${
          top && status[box.id] ? colours.fill : "#fbfcfd"
        }" fill-opacity="0.6" stroke="${colours.stroke}" stroke-dasharray="5 3"/>` +
          `<text x="${r(x + 12)}" y="${
            r(y + 18)
          }" font-size="13" font-weight="600" fill="#323f4b">${escapeXml(box.title)}</text></g>`,
      );
      drawLevel(box.inner!, x + 12, y + 34, direction, status, false, parts);
    } else if (box.kind === "carry") {
      parts.push(
        `<g class="carry"><rect x="${r(x)}" y="${r(y)}" width="${r(box.w)}" height="${
          r(box.h)
        }" rx="${box.h / 2}" fill="#fff" stroke="#8a94a6"/>` +
          `<text x="${r(x + box.w / 2)}" y="${
            r(y + 16)
          }" text-anchor="middle" font-size="12" fill="#52606d">${
            escapeXml(box.title)
          }</text><text x="${r(x + box.w / 2)}" y="${
            r(y + 31)
          }" text-anchor="middle" font-size="11" font-weight="600" fill="#323f4b">${
            escapeXml(box.subtitle)
          }</text></g>`,
      );
    } else {
      const statusText = top && status[box.id] ? ` (${status[box.id]})` : "";
      parts.push(
        `<g class="node" data-stage="${escapeXml(box.id)}"><title>${
          escapeXml(box.id + statusText)
        }</title><rect x="${r(x)}" y="${r(y)}" width="${r(box.w)}" height="${
          r(box.h)
        }" rx="6" fill="${colours.fill}" stroke="${colours.stroke}" stroke-width="1.5"/>` +
          `<text x="${r(x + box.w / 2)}" y="${
            r(y + (box.subtitle ? 18 : 19))
          }" text-anchor="middle" font-size="13" font-weight="600" fill="#1f2933">${
            escapeXml(box.title)
          }</text>` +
          (box.subtitle
            ? `<text x="${r(x + box.w / 2)}" y="${
              r(y + 34)
            }" text-anchor="middle" font-size="11" fill="#52606d">${escapeXml(box.subtitle)}</text>`
            : "") +
          `</g>`,
      );
    }
  }
  const farSide = direction === "LR" ? oy + level.height - 6 : ox + level.width - 6;
  // Where an edge leaves and enters a box: flow goes right (LR) or down (TB).
  const exit = (b: Box) =>
    direction === "LR"
      ? [ox + b.x + b.w, oy + b.y + b.h / 2]
      : [ox + b.x + b.w / 2, oy + b.y + b.h];
  const entry = (b: Box) =>
    direction === "LR" ? [ox + b.x, oy + b.y + b.h / 2] : [ox + b.x + b.w / 2, oy + b.y];
  /** A cubic from one layer to the next, leaving and arriving along the flow. */
  const link = ([x0, y0]: number[], [x3, y3]: number[]): number[] => {
    if (direction === "LR") {
      const bend = Math.max(20, (x3 - x0) / 2);
      return [x0, y0, x0 + bend, y0, x3 - bend, y3, x3, y3];
    }
    const bend = Math.max(16, (y3 - y0) / 2);
    return [x0, y0, x0, y0 + bend, x3, y3 - bend, x3, y3];
  };
  // Labels go where they overlap no box and no other label.
  const obstacles = level.boxes.filter((b) => b.kind !== "dummy").map((b) => ({
    x: ox + b.x,
    y: oy + b.y,
    w: b.w,
    h: b.h,
  }));
  const placed: Array<{ x: number; y: number; w: number; h: number }> = [];
  const overlaps = (a: { x: number; y: number; w: number; h: number }) =>
    [...obstacles, ...placed].some((b) =>
      a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
    );
  for (const edge of level.edges) {
    const a = byId.get(edge.from);
    const b = byId.get(edge.to);
    if (!a || !b) continue;
    const color = edge.back ? "#9aa5b1" : "#7b8794";
    let curves: number[][];
    if (edge.back) {
      // From the body stage around the far side into the carry box.
      const [ax, ay, bx, by] = [ox + a.x, oy + a.y, ox + b.x, oy + b.y];
      curves = [
        direction === "LR"
          ? [
            ax + a.w / 2,
            ay + a.h,
            ax + a.w / 2,
            farSide,
            bx + b.w / 2,
            farSide,
            bx + b.w / 2,
            by + b.h,
          ]
          : [
            ax + a.w,
            ay + a.h / 2,
            farSide,
            ay + a.h / 2,
            farSide,
            by + b.h / 2,
            bx + b.w,
            by + b.h / 2,
          ],
      ];
    } else {
      const chain = [a, ...(edge.via ?? []).map((id) => byId.get(id)!), b];
      curves = chain.slice(1).map((next, i) => link(exit(chain[i]), entry(next)));
    }
    // Consecutive curves meet at dummies: a straight line runs through each.
    let d = "";
    for (const c of curves) {
      d += d === "" ? `M${r(c[0])},${r(c[1])}` : `L${r(c[0])},${r(c[1])}`;
      d += `C${r(c[2])},${r(c[3])} ${r(c[4])},${r(c[5])} ${r(c[6])},${r(c[7])}`;
    }
    const last = curves[curves.length - 1];
    const labelWidth = textWidth(edge.label, 10) + 6;
    let label = { x: 0, y: 0, w: labelWidth, h: 13 };
    let found = false;
    const order = [curves[0], ...curves.slice(1).reverse()];
    for (const t of [0.5, 0.35, 0.65, 0.2, 0.8]) {
      for (const c of order) {
        const u = 1 - t;
        const px = u ** 3 * c[0] + 3 * u * u * t * c[2] + 3 * u * t * t * c[4] + t ** 3 * c[6];
        const py = u ** 3 * c[1] + 3 * u * u * t * c[3] + 3 * u * t * t * c[5] + t ** 3 * c[7];
        // Left to right, the label sits just above its line; top down, across it.
        const candidate = {
          x: px - labelWidth / 2,
          y: py - (direction === "LR" ? 14 : 10),
          w: labelWidth,
          h: 13,
        };
        if (!found && !overlaps(candidate)) {
          label = candidate;
          found = true;
        }
        if (!found && t === 0.5 && c === order[0]) label = candidate;
      }
    }
    placed.push(label);
    parts.push(
      `<g class="edge"><path d="${d}" fill="none" stroke="${color}" stroke-width="1.4"${
        edge.back ? ' stroke-dasharray="5 3"' : ""
      }/>${arrowHead(last[6], last[7], last[6] - last[4], last[7] - last[5], color)}` +
        `<text x="${r(label.x + label.w / 2)}" y="${
          r(label.y + 10)
        }" text-anchor="middle" font-size="10" fill="#52606d" stroke="#ffffff" stroke-width="3" paint-order="stroke">${
          escapeXml(edge.label)
        }</text></g>`,
    );
  }
}

/**
 * Draws a pipeline graph from its config (as written in YAML and stored in
 * `manifest.json`'s `config`): one box per stage with its name and `use`,
 * arrows for `in` references labelled with the output (and port, when it has
 * another name), loop blocks as dashed frames holding their body, a "carry"
 * box and dashed arrows for the values carried from one episode to the next.
 * Stages are placed in layers by longest path from the sources.
 *
 * @param config The run's graph outline (`manifest.json`'s `outline`, made by the runner from the
 *   validated graph): `{ stages: { name: { use, in } | { in, loop: { episodes, carry, stages } } } }`
 *   with every reference as `{stage, output}`.
 * @param options Direction and stage statuses.
 * @returns A standalone SVG document; a config without stages draws "No stages".
 * @example
 * ```ts
 * import { graphSvg } from "./_dag.ts";
 * const svg = graphSvg({
 *   stages: {
 *     load: { use: "load/synthetic" },
 *     export: { use: "export/midi", in: { pieces: { stage: "load", output: "pieces" } } },
 *   },
 * });
 * console.log(svg.match(/class="node"/g)?.length); // 2
 * ```
 */
export function graphSvg(config: unknown, options: GraphSvgOptions = {}): string {
  const direction = options.direction ?? "LR";
  const stages = asRecord(asRecord(config).stages);
  const level = layoutLevel(stages, direction);
  const margin = 12;
  const statuses = Object.values(options.status ?? {}).filter((s) => s in STATUS_COLOURS);
  const legend = [...new Set(statuses)];
  const legendHeight = legend.length > 0 ? 26 : 0;
  const width = Math.ceil(Math.max(level.width + 2 * margin, 160));
  const height = Math.ceil(Math.max(level.height + 2 * margin, 60) + legendHeight);
  const parts = [svgOpen(width, height, "Pipeline graph")];
  if (level.boxes.length === 0) {
    parts.push(
      `<text x="${width / 2}" y="${
        height / 2
      }" text-anchor="middle" fill="#7b8794">No stages</text></svg>`,
    );
    return parts.join("");
  }
  drawLevel(level, margin, margin, direction, options.status ?? {}, true, parts);
  if (legend.length > 0) {
    let x = margin;
    const y = height - 18;
    parts.push(`<g class="status-legend" font-size="11" fill="#52606d">`);
    for (const status of legend) {
      const c = STATUS_COLOURS[status];
      parts.push(
        `<rect x="${x}" y="${y}" width="14" height="12" rx="3" fill="${c.fill}" stroke="${c.stroke}"/>`,
        `<text x="${x + 19}" y="${y + 10}">${escapeXml(status)}</text>`,
      );
      x += 19 + textWidth(status, 11) + 16;
    }
    parts.push(`</g>`);
  }
  parts.push(`</svg>`);
  return parts.join("");
}
