import assert from "node:assert/strict";
import { formatTick, linePlot, niceTicks, smoothEma } from "./_plot.ts";
import { pianoRollSvg, pitchName } from "./_pianoroll.ts";
import { graphSvg } from "./_dag.ts";
import { svgSize } from "./_svg.ts";
import type { Piece } from "../_music/types.ts";

/**
 * A small well-formedness check: every tag closes in order, attribute values
 * are quoted, text holds no bare `<` and only entity `&`s, one root element.
 * Returns the element names in document order.
 */
export function checkXml(xml: string): string[] {
  const tag = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)>/y;
  const stack: string[] = [];
  const names: string[] = [];
  let roots = 0;
  let i = 0;
  const checkEntities = (text: string) => {
    const bad = /&(?!(?:[a-z]+|#\d+|#x[0-9a-f]+);)/i.exec(text);
    if (bad) {
      throw new Error(`Bare "&" at ${JSON.stringify(text.slice(bad.index, bad.index + 20))}`);
    }
  };
  const checkText = (text: string) => {
    checkEntities(text);
    if (stack.length === 0 && text.trim() !== "") throw new Error(`Text outside the root: ${text}`);
  };
  while (i < xml.length) {
    const next = xml.indexOf("<", i);
    checkText(xml.slice(i, next === -1 ? xml.length : next));
    if (next === -1) break;
    tag.lastIndex = next;
    const match = tag.exec(xml);
    if (!match) throw new Error(`Malformed tag at ${JSON.stringify(xml.slice(next, next + 40))}`);
    const [, closing, name, attributes, selfClosing] = match;
    checkEntities(attributes);
    if (closing) {
      const open = stack.pop();
      if (open !== name) throw new Error(`</${name}> closes <${open}>`);
    } else {
      if (stack.length === 0) roots++;
      names.push(name);
      if (!selfClosing) stack.push(name);
    }
    i = tag.lastIndex;
  }
  if (stack.length > 0) throw new Error(`Unclosed <${stack.join("> <")}>`);
  if (roots !== 1) throw new Error(`Expected one root element, found ${roots}`);
  return names;
}

function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

Deno.test("checkXml() rejects broken documents", () => {
  assert.throws(() => checkXml("<svg><g></svg>"), /closes/);
  assert.throws(() => checkXml("<svg>a & b</svg>"), /Bare "&"/);
  assert.throws(() => checkXml("<svg x=1></svg>"), /Malformed tag/);
  assert.deepEqual(checkXml('<svg a="1"><g/><text>a &amp; b</text></svg>'), ["svg", "g", "text"]);
});

Deno.test("niceTicks() steps by 1, 2 or 5 times a power of ten and covers the range", () => {
  assert.deepEqual(niceTicks(0, 9.5, 5), { ticks: [0, 2, 4, 6, 8, 10], step: 2 });
  assert.deepEqual(niceTicks(0.1, 0.35, 5).ticks, [0.1, 0.15, 0.2, 0.25, 0.3, 0.35]);
  assert.deepEqual(niceTicks(-3, 7, 2), { ticks: [-5, 0, 5, 10], step: 5 });
  // Equal ends widen by 10% so a flat line still has an axis.
  assert.deepEqual(niceTicks(5, 5, 2).ticks, [4.5, 5, 5.5]);
  assert.equal(formatTick(0.15, 0.05), "0.15");
  assert.equal(formatTick(12000, 2000), "12000");
  assert.equal(formatTick(2e-5, 1e-5), "2e-5");
});

Deno.test("smoothEma() is TensorBoard's debiased moving average", () => {
  // 1st: (0.5*1)/(1-0.5) = 1; 2nd: (0.25 + 0.5*3)/(1-0.25) = 1.75/0.75.
  const smoothed = smoothEma([1, 3, NaN], 0.5);
  assert.equal(smoothed[0], 1);
  assert.ok(Math.abs(smoothed[1] - 1.75 / 0.75) < 1e-12);
  assert.ok(Number.isNaN(smoothed[2]));
  assert.deepEqual(smoothEma([4, 5], 0), [4, 5]);
});

Deno.test("linePlot() draws one line per series, breaks lines at NaN, lists empty series", () => {
  const svg = linePlot({
    title: "Loss & NLL <train>",
    xLabel: "step",
    yLabel: "loss",
    series: [
      { name: "loss/train", points: [[0, 2], [1, 1.5], [2, NaN], [3, 1.2], [4, 1.1]] },
      { name: "nll/validation", points: [[0, 2.2], [4, 1.4]] },
      { name: "kl", points: [] },
    ],
  });
  checkXml(svg);
  assert.equal(count(svg, 'class="line"'), 2);
  const first = /data-series="loss\/train" d="([^"]+)"/.exec(svg)![1];
  assert.equal(count(first, "M"), 2, "the NaN at step 2 splits the line in two");
  assert.equal(count(first, "L"), 2);
  assert.ok(svg.includes("kl (no data)"));
  assert.ok(svg.includes("Loss &amp; NLL &lt;train&gt;"));
  // Short series mark their points: 4 finite + 2.
  assert.equal(count(svg, "<circle"), 6);
  // y data 1.1..2.2 over about 5 ticks: raw step 0.22 rounds up to 0.5, so 1.0 .. 2.5.
  for (const tick of ["1.0", "1.5", "2.0", "2.5"]) assert.ok(svg.includes(`end">${tick}</text>`));
  assert.ok(!svg.includes('end">3.0</text>') && !svg.includes('end">0.5</text>'));
});

Deno.test("linePlot() with smoothing draws a faint raw line under each smoothed one", () => {
  const points: Array<[number, number]> = Array.from({ length: 100 }, (_, i) => [i, i % 2]);
  const svg = linePlot({
    title: "reward",
    xLabel: "episode",
    yLabel: "reward",
    series: [{ name: "total", points }, { name: "harmony", points }],
    smoothing: 0.9,
    maxPoints: 50,
  });
  checkXml(svg);
  assert.equal(count(svg, 'class="line raw"'), 2);
  assert.equal(count(svg, 'class="line"'), 2);
  // Buckets of two alternating points average to 0.5: a flat raw line of 50 points.
  const raw = /class="line raw" d="([^"]+)"/.exec(svg)![1];
  assert.equal(count(raw, "L"), 49);
  assert.equal(new Set(raw.split(/[ML]/).filter(Boolean).map((p) => p.split(",")[1])).size, 1);
});

Deno.test("linePlot() without finite values says so and stays well-formed", () => {
  const svg = linePlot({
    title: "empty",
    xLabel: "x",
    yLabel: "y",
    series: [{ name: "a", points: [[0, NaN], [1, Infinity]] }],
  });
  checkXml(svg);
  assert.ok(svg.includes(">No data<"));
  assert.equal(count(svg, 'class="line"'), 0);
  const none = linePlot({ title: "none", xLabel: "x", yLabel: "y", series: [] });
  checkXml(none);
  assert.deepEqual(svgSize(none), { width: 560, height: 300 });
});

const piece: Piece = {
  id: "hand-made",
  tempoBpm: 120,
  beatsPerBar: 4,
  beatsSec: [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5],
  notes: [
    { pitch: 60, startSec: 0, endSec: 0.5, velocity: 127 },
    { pitch: 64, startSec: 0.5, endSec: 1, velocity: 64 },
    { pitch: 67, startSec: 1, endSec: 1.5, velocity: 100 },
    { pitch: 72, startSec: 1.5, endSec: 2.5, velocity: 80 },
    { pitch: 65, startSec: 2.5, endSec: 3, velocity: 80 },
  ],
};

Deno.test("pianoRollSvg() draws a rect per note with velocity as opacity, and the beat grid", () => {
  const svg = pianoRollSvg(piece, { width: 400, height: 200 });
  checkXml(svg);
  assert.equal(count(svg, 'class="note"'), 5);
  assert.ok(svg.includes('fill-opacity="1.00"'), "velocity 127 is opaque");
  // 0.3 + 0.7 * 64/127 = 0.6528 → 0.65.
  assert.ok(svg.includes('fill-opacity="0.65"'));
  // Beats 0..3 s: bars at beats 0 and 4 (0 s and 2 s), six plain beats.
  assert.equal(count(svg, 'class="bar"'), 2);
  assert.equal(count(svg, 'class="beat"'), 5);
  // Pitches 59..73 after padding: C4 and C5 are labelled.
  assert.ok(svg.includes(">C4<") && svg.includes(">C5<"));
  assert.equal(count(svg, 'text-anchor="end">C'), 2);
});

Deno.test("pianoRollSvg() with maxSec leaves out later notes and cuts the one across the edge", () => {
  const svg = pianoRollSvg(piece, { width: 438, height: 200, maxSec: 2 });
  checkXml(svg);
  assert.equal(count(svg, 'class="note"'), 4);
  // Plot spans x 38..430 for 0..2 s: the C5 note from 1.5 s is cut at 2 s (98 px wide).
  assert.ok(svg.includes('x="332" y='), "C5 starts at 38 + 1.5/2*392 = 332");
  assert.ok(/x="332" y="[\d.]+" width="98"/.test(svg));
  const empty = pianoRollSvg({ ...piece, notes: [] });
  checkXml(empty);
  assert.ok(empty.includes(">No notes<"));
});

Deno.test("pitchName() names middle C C4", () => {
  assert.equal(pitchName(60), "C4");
  assert.equal(pitchName(21), "A0");
  assert.equal(pitchName(66), "F♯4");
});

const config = {
  name: "rl",
  stages: {
    load: { use: "load/synthetic" },
    tokenize: { use: "tokenize/events", in: { corpus: { stage: "load", output: "corpus" } } },
    pretrain: { use: "pretrain/mle", in: { tokens: { stage: "tokenize", output: "tokens" } } },
    finetune: {
      loop: {
        episodes: 20,
        carry: {
          model: {
            init: { stage: "pretrain", output: "model" },
            next: { stage: "update", output: "model" },
          },
        },
        stages: {
          rollout: { use: "rollout/sample", in: { model: { stage: "finetune", output: "model" } } },
          reward: {
            use: "reward/score",
            in: { rollouts: { stage: "rollout", output: "rollouts" } },
          },
          update: {
            use: "update/ppo",
            in: {
              model: { stage: "finetune", output: "model" },
              rollouts: { stage: "rollout", output: "rollouts" },
              rewards: { stage: "reward", output: "rewards" },
              reference: { stage: "pretrain", output: "model" },
            },
          },
        },
      },
    },
    export: { use: "export/midi", in: { rollouts: { stage: "finetune", output: "model" } } },
  },
};

Deno.test("graphSvg() draws every stage, the loop with its carry, and the edges", () => {
  for (const direction of ["LR", "TB"] as const) {
    const svg = graphSvg(config, { direction, status: { load: "cached", pretrain: "done" } });
    checkXml(svg);
    assert.equal(count(svg, 'class="node"'), 7);
    assert.equal(count(svg, 'class="loop"'), 1);
    assert.equal(count(svg, 'class="carry"'), 1);
    // Outer: load→tokenize, tokenize→pretrain, pretrain→finetune (carry init and reference
    // merge into one arrow), finetune→export. Body: carry→rollout, carry→update,
    // rollout→reward, rollout→update, reward→update, update→carry (back).
    assert.equal(count(svg, 'class="edge"'), 10);
    assert.equal(count(svg, 'stroke-dasharray="5 3"/>'), 1 + 1, "the loop frame and the back edge");
    assert.ok(svg.includes("finetune: loop × 20"));
    assert.ok(svg.includes(">model → rollouts<"), "output and port differ");
    assert.ok(svg.includes('fill="#e3effb"'), "cached colour");
    assert.ok(svg.includes(">cached<") && svg.includes(">done<"), "status legend");
  }
  const lr = svgSize(graphSvg(config, { direction: "LR" }));
  const tb = svgSize(graphSvg(config, { direction: "TB" }));
  assert.ok(lr.width > lr.height && tb.height > tb.width);
});

Deno.test("graphSvg() survives configs without stages or with broken references", () => {
  checkXml(graphSvg({}));
  assert.ok(graphSvg(undefined).includes("No stages"));
  const svg = graphSvg({
    stages: { a: { use: "x/y", in: { p: { stage: "nowhere", output: "out" }, q: 3 } } },
  });
  checkXml(svg);
  assert.equal(count(svg, 'class="node"'), 1);
  assert.equal(count(svg, 'class="edge"'), 0);
});
