import assert from "node:assert/strict";
import { join } from "node:path";
import { defaultParams, testContext } from "../_testing.ts";
import { findSoundFont } from "./_audio.ts";
import { writeMidi } from "../_music/midi.ts";
import type { Piece } from "../_music/types.ts";
import plugin, { formatNumber, groupMetrics, type ReportOutput, tablesHtml } from "./html.ts";

function hasFluidsynth(): boolean {
  try {
    return new Deno.Command("fluidsynth", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}
const canRender = hasFluidsynth() && findSoundFont() !== undefined;

function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

function makePiece(id: string, pitches: number[]): Piece {
  return {
    id,
    tempoBpm: 120,
    beatsPerBar: 4,
    beatsSec: Array.from({ length: 9 }, (_, i) => i * 0.5),
    notes: pitches.map((pitch, i) => ({
      pitch,
      startSec: i * 0.5,
      endSec: i * 0.5 + 0.45,
      velocity: 60 + i * 10,
    })),
  };
}

const PIECES = [
  makePiece("sample-1", [60, 64, 67, 72]),
  makePiece("sample-2", [62, 65, 69]),
  makePiece("refined 3", [55, 59, 62, 67, 71]),
];

const OUTLINE = {
  name: "toy-rl",
  seed: 3,
  stages: {
    load: { use: "load/synthetic" },
    pretrain: { use: "pretrain/mle", in: { corpus: { stage: "load", output: "corpus" } } },
    finetune: {
      loop: {
        episodes: 30,
        carry: {
          model: {
            init: { stage: "pretrain", output: "model" },
            next: { stage: "update", output: "model" },
          },
        },
        stages: {
          reward: { use: "reward/score", in: { model: { stage: "finetune", output: "model" } } },
          update: {
            use: "update/ppo",
            in: {
              model: { stage: "finetune", output: "model" },
              rewards: { stage: "reward", output: "rewards" },
            },
          },
        },
      },
    },
    export: { use: "export/midi", in: { pieces: { stage: "finetune", output: "model" } } },
    report: { use: "report/html", in: { files: { stage: "export", output: "files" } } },
  },
};

/** A run directory as the runner leaves it when the report stage starts. */
async function makeRunDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "harmonyrl-report-" });
  const manifest = {
    graph: "toy-rl",
    runId: "20260101-000000-abcd",
    status: "running",
    startedAt: "2026-01-01T00:00:00.000Z",
    seed: 3,
    backend: { name: "cpu", detail: "pure JS" },
    outline: OUTLINE,
    stages: {
      load: { plugin: "load/synthetic", status: "cached", durationSec: 0.2 },
      pretrain: {
        plugin: "pretrain/mle",
        status: "done",
        durationSec: 12.5,
        reason: "params changed",
      },
      finetune: { plugin: "loop", status: "done", durationSec: 80 },
      export: { plugin: "export/midi", status: "done", durationSec: 0.1 },
      report: { plugin: "report/html", status: "pending" },
    },
  };
  const steps = (n: number, f: (i: number) => Record<string, number>) =>
    Array.from({ length: n }, (_, i) => ({ step: i + 1, values: f(i) }));
  const metrics = {
    pretrain: steps(50, (i) => ({
      "loss/train": 3 / (1 + i / 10),
      ...(i % 10 === 9 ? { "nll/validation": 3.2 / (1 + i / 12) } : {}),
    })),
    "finetune/reward": steps(60, (i) => ({
      "reward/harmony": Math.sin(i) * 0.1 + i / 60,
      "reward/total": i / 50,
    })),
    "finetune/update": steps(60, (i) => ({
      "loss/policy": 0.1 - i / 1000,
      "kl/reference": i / 100,
      "entropy/policy": 2 - i / 100,
    })),
  };
  await Deno.writeTextFile(join(dir, "manifest.json"), JSON.stringify(manifest));
  await Deno.writeTextFile(join(dir, "metrics.json"), JSON.stringify(metrics));
  await Deno.writeTextFile(
    join(dir, "events.jsonl"),
    [
      { time: "t", type: "log", level: "info", stage: "load", message: "loaded" },
      {
        time: "t",
        type: "log",
        level: "warn",
        stage: "load",
        message: 'Skipped "bad.mid": <truncated>',
      },
      { time: "t", type: "metric", stage: "extra", step: 1, values: { "x/y": 1 } },
    ].map((e) => JSON.stringify(e)).join("\n") + "\n",
  );
  await Deno.mkdir(join(dir, "midi"));
  for (const piece of PIECES.slice(0, 2)) {
    await Deno.writeFile(join(dir, "midi", `${piece.id}.mid`), writeMidi(piece));
  }
  return dir;
}

const FILES = (dir: string) => ({
  dir: join(dir, "midi"),
  files: PIECES.slice(0, 2).map((p) => join(dir, "midi", `${p.id}.mid`)),
});

const EVAL_METRICS = {
  sets: {
    real: { pitchRange: 24.5, notesPerSec: 6.1 },
    finetuned: { pitchRange: 12, notesPerSec: 4 },
  },
  comparisons: {
    realVsFinetuned: {
      pitchRange: { overlap: 0.8, kl: 0.12 },
      notesPerSec: { overlap: 0.5, kl: 0.7 },
    },
  },
};

Deno.test("groupMetrics() makes one group per stage label and namespace, in order", () => {
  const groups = groupMetrics({
    pretrain: [
      { step: 1, values: { "loss/train": 2, "nll/validation": 2.5 } },
      { step: 2, values: { "loss/train": 1.5 } },
    ],
    "finetune/update": [{ step: 1, values: { "loss/policy": 0.1, "loss/value": 0.3, entropy: 2 } }],
  });
  assert.deepEqual(
    groups.map((g) => [g.label, g.namespace, [...g.series.keys()]]),
    [
      ["pretrain", "loss", ["loss/train"]],
      ["pretrain", "nll", ["nll/validation"]],
      ["finetune/update", "loss", ["loss/policy", "loss/value"]],
      ["finetune/update", "entropy", ["entropy"]],
    ],
  );
  assert.deepEqual(groups[0].series.get("loss/train"), [[1, 2], [2, 1.5]]);
});

Deno.test("tablesHtml() puts sibling number maps side by side with a change column", () => {
  const html = tablesHtml({
    policies: { pretrained: { reward: 0.2, kl: 0 }, finetuned: { reward: 0.5, kl: 0.25 } },
    notesKept: 0.875,
  });
  assert.ok(
    html.includes('<table class="kv"><tbody><tr><th>notesKept</th><td class="num">0.875</td>'),
  );
  assert.ok(html.includes("<h4>policies</h4>"));
  // Rows are the metrics (more keys than policies), columns pretrained, finetuned, change.
  assert.ok(
    html.includes(
      '<tr><th>reward</th><td class="num">0.2</td><td class="num">0.5</td><td class="num delta">+0.3</td></tr>',
    ),
  );
  assert.ok(html.includes('<td class="num delta">+0.25</td>'));
  // Three features × {overlap, kl}: the longer list (features) runs down, no change column.
  const comparison = tablesHtml({
    ...EVAL_METRICS.comparisons.realVsFinetuned,
    pitchClasses: { overlap: 0.9, kl: 0.01 },
  });
  assert.ok(comparison.includes('<th class="num">overlap</th><th class="num">kl</th></tr>'));
  assert.ok(!comparison.includes("change"));
  // One metric of two policies is still a before/after comparison.
  assert.ok(
    tablesHtml({ pretrained: { reward: 1 }, finetuned: { reward: 0.5 } })
      .includes(
        '<tr><th>reward</th><td class="num">1</td><td class="num">0.5</td><td class="num delta">−0.5</td>',
      ),
  );
  assert.ok(tablesHtml({ a: [1, 2, 3] }).includes("1, 2, 3"));
  assert.ok(tablesHtml({ "<b>": "x & y" }).includes("&lt;b&gt;</th><td>x &amp; y</td>"));
});

Deno.test("formatNumber() keeps 4 significant digits and marks NaN", () => {
  assert.equal(formatNumber(0.123456), "0.1235");
  assert.equal(formatNumber(1234.567), "1235");
  assert.equal(formatNumber(42), "42");
  assert.equal(formatNumber(0.00012), "1.20e-4");
  assert.equal(formatNumber(NaN), "—");
});

Deno.test("report/html writes a self-contained report.html with graph, curves, tables and piano rolls", async () => {
  const dir = await makeRunDir();
  try {
    const ctx = testContext({ dir });
    ctx.stage = "report";
    const out = await plugin.run(
      ctx,
      {
        pieces: PIECES,
        files: FILES(dir),
        metrics: EVAL_METRICS,
        evaluation: { policies: { pretrained: { reward: 0.2 }, finetuned: { reward: 0.5 } } },
        refinement: { dissonanceBefore: 0.3, dissonanceAfter: 0.1, notesKept: 0.9 },
      },
      defaultParams(plugin, { audio: false }) as never,
    );
    const report = out.report as ReportOutput;
    assert.equal(report.path, join(dir, "report.html"));
    assert.deepEqual(report.audio, []);
    const html = await Deno.readTextFile(report.path);
    assert.ok(html.startsWith("<!doctype html>"));
    assert.ok(html.includes("<title>HarmonyRL run: toy-rl</title>"));

    // 1 graph + curves (pretrain: loss, nll; finetune/reward: reward; finetune/update: loss,
    // kl, entropy) + 3 piano rolls; every figure file is the SVG shown inline.
    const names = report.figures.map((f) => f.slice(join(dir, "figures").length + 1));
    assert.deepEqual(names, [
      "graph.svg",
      "curve-pretrain-loss.svg",
      "curve-pretrain-nll.svg",
      "curve-finetune-reward-reward.svg",
      "curve-finetune-update-loss.svg",
      "curve-finetune-update-kl.svg",
      "curve-finetune-update-entropy.svg",
      "pianoroll-sample-1.svg",
      "pianoroll-sample-2.svg",
      "pianoroll-refined-3.svg",
    ]);
    assert.equal(count(html, "<svg "), 10);
    for (const figure of report.figures) {
      const svg = (await Deno.readTextFile(figure)).replace(/^<\?xml[^>]*>\n/, "").trim();
      assert.ok(html.includes(svg), `${figure} is inline in the page`);
    }
    // The graph shows stage statuses; this stage is running while it writes.
    assert.ok(html.includes('<span class="status status-running">running</span>'));
    assert.ok(html.includes('<span class="status status-cached">cached</span>'));
    // Reward terms in one plot, smoothed (60 points).
    const reward = await Deno.readTextFile(
      join(dir, "figures", "curve-finetune-reward-reward.svg"),
    );
    assert.equal(count(reward, 'class="line raw"'), 2);
    assert.ok(reward.includes('data-series="harmony"') && reward.includes('data-series="total"'));
    // Tables: eval/metrics parts, the RL evaluation with a change column, refinement figures.
    assert.ok(html.includes("<h4>Per set</h4>") && html.includes("<h5>realVsFinetuned</h5>"));
    // Comparisons list features down the rows even when there are only two.
    assert.ok(
      html.includes(
        '<tr><th>pitchRange</th><td class="num">0.8</td><td class="num">0.12</td></tr>',
      ),
    );
    assert.ok(html.includes('<td class="num delta">+0.3</td>'));
    assert.ok(html.includes("<th>notesKept</th>"));
    // Pieces: a piano roll each and a link to its exported MIDI file; the third was not exported.
    assert.equal(count(html, '<article class="piece"'), 3);
    assert.equal(count(html, 'class="note"'), 4 + 3 + 5);
    assert.ok(html.includes('<a href="midi/sample-1.mid">MIDI file</a>'));
    assert.equal(count(html, "MIDI file</a>"), 2);
    assert.equal(count(html, "<audio"), 0);
    // Warnings from events.jsonl, escaped.
    assert.ok(html.includes("Skipped &quot;bad.mid&quot;: &lt;truncated&gt;"));
    // Nothing external, no scripts.
    const withoutNamespace = html.replaceAll('xmlns="http://www.w3.org/2000/svg"', "");
    assert.ok(!/https?:/.test(withoutNamespace) && !html.includes("<script"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "report/html renders a WAV per piece and adds players (needs fluidsynth)",
  ignore: !canRender,
  async fn() {
    const dir = await makeRunDir();
    try {
      const out = await plugin.run(
        testContext({ dir }),
        { pieces: PIECES, files: FILES(dir) },
        defaultParams(plugin) as never,
      );
      const report = out.report as ReportOutput;
      assert.deepEqual(report.audio, [
        join(dir, "audio", "sample-1.wav"),
        join(dir, "audio", "sample-2.wav"),
        join(dir, "audio", "refined 3.wav"),
      ]);
      const html = await Deno.readTextFile(report.path);
      assert.equal(count(html, "<audio controls"), 3);
      assert.ok(html.includes('src="audio/refined%203.wav"'));
      // The unexported piece got a MIDI file for the synthesizer, and a link to it.
      assert.ok(html.includes('<a href="audio/refined%203.mid">MIDI file</a>'));
      for (const wav of report.audio) assert.ok(Deno.statSync(wav).size > 44100);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("report/html without a usable SoundFont shows how to install one and keeps the rest", async () => {
  const dir = await makeRunDir();
  try {
    const ctx = testContext({ dir });
    const out = await plugin.run(
      ctx,
      { pieces: PIECES },
      defaultParams(plugin, { soundFont: join(dir, "missing.sf2"), maxPieces: 2 }) as never,
    );
    const report = out.report as ReportOutput;
    assert.deepEqual(report.audio, []);
    const html = await Deno.readTextFile(report.path);
    assert.ok(
      html.includes(
        '<div class="notice"><strong>No audio.</strong> Cannot render audio: SoundFont',
      ),
    );
    assert.ok(html.includes("Showing 2 of 3 pieces."));
    assert.equal(count(html, '<article class="piece"'), 2);
    assert.equal(
      ctx.logs.filter((l) => l.level === "warn").length,
      1,
      "one warning, not one per piece",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("report/html shows exported MIDI files when no pieces are given", async () => {
  const dir = await makeRunDir();
  try {
    const out = await plugin.run(
      testContext({ dir }),
      { files: { ...FILES(dir), files: [...FILES(dir).files, join(dir, "midi", "gone.mid")] } },
      defaultParams(plugin, { audio: false }) as never,
    );
    const html = await Deno.readTextFile((out.report as ReportOutput).path);
    assert.equal(count(html, '<article class="piece"'), 2);
    assert.ok(html.includes("<h3>sample-2</h3>"));
    assert.equal(count(html, 'class="note"'), 4 + 3);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("report/html in an empty run directory still writes a page, and falls back to events.jsonl", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ctx = testContext({ dir });
    const out = await plugin.run(ctx, {}, defaultParams(plugin) as never);
    const html = await Deno.readTextFile((out.report as ReportOutput).path);
    assert.ok(html.includes("No metrics were recorded in this run."));
    assert.ok(html.includes("No manifest.json in the run directory."));
    assert.deepEqual((out.report as ReportOutput).figures, []);

    // metrics.json overwritten with something else: the metric events are plotted instead.
    await Deno.writeTextFile(join(dir, "metrics.json"), JSON.stringify(EVAL_METRICS));
    await Deno.writeTextFile(
      join(dir, "events.jsonl"),
      JSON.stringify({ type: "metric", stage: "train", step: 1, values: { "loss/train": 1 } }) +
        "\n{cut off",
    );
    const again = await plugin.run(ctx, {}, defaultParams(plugin) as never);
    assert.deepEqual(
      (again.report as ReportOutput).figures.map((f) => f.replace(/^.*\//, "")),
      ["curve-train-loss.svg"],
    );
    assert.ok(
      ctx.logs.some((l) =>
        l.level === "warn" && l.message.includes("plotting the metrics of events.jsonl")
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("report/html rejects inputs of the wrong shape and skips bad pieces", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ctx = testContext({ dir });
    const params = defaultParams(plugin, { audio: false }) as never;
    await assert.rejects(
      plugin.run(ctx, { pieces: "sample-1" as never }, params),
      { message: 'Cannot build the report: input "pieces" is not a list of pieces' },
    );
    await assert.rejects(
      plugin.run(ctx, { files: { dir: "x", files: [1] } as never }, params),
      { message: 'Cannot build the report: input "files" is not {dir, files: string[]}' },
    );
    await assert.rejects(
      plugin.run(ctx, { evaluation: 3 as never }, params),
      { message: 'Cannot build the report: input "evaluation" is not an object of metrics' },
    );
    const out = await plugin.run(
      ctx,
      { pieces: [{ id: "bad", notes: "none" } as never, PIECES[0]] },
      params,
    );
    const html = await Deno.readTextFile((out.report as ReportOutput).path);
    assert.equal(count(html, '<article class="piece"'), 1);
    assert.ok(
      ctx.logs.some((l) =>
        l.message === 'Skipping piece "bad": it has no valid id, notes or beats'
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("report/html is declared as an uncached report stage", () => {
  assert.equal(plugin.kind, "report");
  assert.equal(plugin.cache, false);
  assert.equal(plugin.outputs.report.type, "report");
  assert.deepEqual(
    Object.entries(plugin.inputs).map(([name, port]) => [name, port.type, port.optional]),
    [
      ["pieces", "pieces", true],
      ["files", "files", true],
      ["metrics", "metrics", true],
      ["evaluation", "metrics", true],
      ["refinement", "metrics", true],
    ],
  );
});
