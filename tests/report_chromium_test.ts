/**
 * End-to-end check of `report/html` in a real browser: builds a report from a
 * hand-made run directory, opens it from disk in headless Chromium through
 * the Chrome DevTools Protocol (a WebSocket from Deno, no browser download),
 * and checks that the page logs no errors, requests nothing from the network,
 * and that every SVG picture is well-formed and drawn with a size. Saves a
 * full-page screenshot to `/tmp/report.png` for a person to look at.
 *
 * Chromium: Debian's `chromium` package (`/usr/bin/chromium`), or the path in
 * `$CHROMIUM`. Without it the test is skipped.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { defaultParams, testContext } from "../plugins/_testing.ts";
import { writeMidi } from "../plugins/_music/midi.ts";
import type { Piece } from "../plugins/_music/types.ts";
import report, { type ReportOutput } from "../plugins/report/html.ts";

function findChromium(): string | undefined {
  const candidates = [Deno.env.get("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"];
  return candidates.find((path) => {
    if (!path) return false;
    try {
      return Deno.statSync(path).isFile;
    } catch {
      return false;
    }
  });
}
const CHROMIUM = findChromium();

/** A tiny Chrome DevTools Protocol client over one WebSocket (flat sessions). */
class Cdp {
  #ws: WebSocket;
  #nextId = 1;
  #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #listeners: Array<(message: { method: string; params: Record<string, unknown> }) => void> = [];
  readonly closed: Promise<void>;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    this.closed = new Promise((resolve) => ws.addEventListener("close", () => resolve()));
    ws.addEventListener("message", (event) => {
      const message = JSON.parse(event.data as string);
      if (typeof message.id === "number") {
        const pending = this.#pending.get(message.id);
        this.#pending.delete(message.id);
        if (message.error) {
          pending?.reject(new Error(`${message.error.message} (${message.error.code})`));
        } else pending?.resolve(message.result);
      } else {
        for (const listener of this.#listeners) listener(message);
      }
    });
  }

  static connect(url: string): Promise<Cdp> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.addEventListener("open", () => resolve(new Cdp(ws)), { once: true });
      ws.addEventListener("error", () => reject(new Error(`Cannot connect to "${url}"`)), {
        once: true,
      });
    });
  }

  send<T = Record<string, unknown>>(
    method: string,
    params: Record<string, unknown> = {},
    sessionId?: string,
  ): Promise<T> {
    const id = this.#nextId++;
    this.#ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
    });
  }

  on(listener: (message: { method: string; params: Record<string, unknown> }) => void): void {
    this.#listeners.push(listener);
  }

  /** Resolves at the first event with this method, or rejects after `timeoutMs`. */
  waitFor(method: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`No "${method}" within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.on((message) => {
        if (message.method === method) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }

  close(): Promise<void> {
    this.#ws.close();
    return this.closed;
  }
}

/** A deterministic pseudo-random sequence (no Math.random in tests). */
function lcg(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

function makePiece(id: string, seed: number): Piece {
  const random = lcg(seed);
  const scale = [0, 2, 4, 5, 7, 9, 11];
  const notes = [];
  for (let beat = 0; beat < 32; beat++) {
    const startSec = beat * 0.5;
    // A bass note every bar, and a melody note on most beats.
    if (beat % 4 === 0) {
      notes.push({
        pitch: 48 + scale[Math.floor(random() * 3) * 2],
        startSec,
        endSec: startSec + 1.9,
        velocity: 70,
      });
    }
    if (random() < 0.85) {
      const pitch = 60 + scale[Math.floor(random() * 7)] + (random() < 0.3 ? 12 : 0);
      notes.push({
        pitch,
        startSec,
        endSec: startSec + 0.25 + random() * 0.5,
        velocity: 50 + Math.floor(random() * 70),
      });
    }
  }
  notes.sort((a, b) => a.startSec - b.startSec || a.pitch - b.pitch);
  return {
    id,
    tempoBpm: 120,
    beatsPerBar: 4,
    beatsSec: Array.from({ length: 33 }, (_, i) => i * 0.5),
    notes,
  };
}

/**
 * The outline the runner writes to `manifest.json` (what the report draws the graph from) for
 * stages written as in YAML: references `"stage.output"` become `{stage, output}`.
 */
function outlineOf(stages: Record<string, unknown>): Record<string, unknown> {
  const ref = (text: string) => ({ stage: text.split(".")[0], output: text.split(".")[1] });
  const refs = (map: Record<string, string> = {}) =>
    Object.fromEntries(Object.entries(map).map(([port, text]) => [port, ref(text)]));
  return {
    stages: Object.fromEntries(
      Object.entries(stages).map(([name, value]) => {
        const stage = value as {
          use?: string;
          in?: Record<string, string>;
          loop?: {
            episodes: number;
            carry: Record<string, { init: string; next: string }>;
            stages: Record<string, unknown>;
          };
        };
        return [name, {
          ...(stage.use !== undefined ? { use: stage.use } : {}),
          in: refs(stage.in),
          ...(stage.loop
            ? {
              loop: {
                episodes: stage.loop.episodes,
                carry: Object.fromEntries(
                  Object.entries(stage.loop.carry).map(([carried, c]) => [
                    carried,
                    { init: ref(c.init), next: ref(c.next) },
                  ]),
                ),
                stages: (outlineOf(stage.loop.stages) as { stages: unknown }).stages,
              },
            }
            : {}),
        }];
      }),
    ),
  };
}

async function makeRunDir(): Promise<{ dir: string; pieces: Piece[]; files: string[] }> {
  const dir = await Deno.makeTempDir({ prefix: "harmonyrl-chromium-" });
  const random = lcg(7);
  const config = {
    name: "rl-tuner",
    seed: 1,
    stages: {
      load: { use: "load/midi-dir", with: { dir: "data/maestro-v3.0.0" } },
      tokenize: { use: "tokenize/events", in: { corpus: "load.corpus" } },
      pretrain: { use: "pretrain/mle", in: { tokens: "tokenize.tokens" } },
      finetune: {
        loop: {
          episodes: 100,
          carry: { model: { init: "pretrain.model", next: "update.model" } },
          stages: {
            rollout: { use: "rollout/sample", in: { model: "finetune.model" } },
            reward: { use: "reward/score", in: { rollouts: "rollout.rollouts" } },
            update: {
              use: "update/ppo",
              in: {
                model: "finetune.model",
                rollouts: "rollout.rollouts",
                rewards: "reward.rewards",
                reference: "pretrain.model",
              },
            },
          },
        },
      },
      sample: { use: "rollout/sample", in: { model: "finetune.model" } },
      export: { use: "export/midi", in: { rollouts: "sample.rollouts" } },
      eval: { use: "eval/metrics", in: { real: "load.corpus", finetuned: "sample.rollouts" } },
      report: { use: "report/html", in: { files: "export.files", metrics: "eval.metrics" } },
    },
  };
  const stages = {
    load: { plugin: "load/midi-dir", status: "cached", durationSec: 3.1 },
    tokenize: { plugin: "tokenize/events", status: "cached", durationSec: 8.2 },
    pretrain: {
      plugin: "pretrain/mle",
      status: "done",
      durationSec: 642,
      reason: "params changed: lr",
    },
    finetune: { plugin: "loop", status: "done", durationSec: 1880 },
    sample: { plugin: "rollout/sample", status: "done", durationSec: 12 },
    export: { plugin: "export/midi", status: "done", durationSec: 0.2 },
    eval: { plugin: "eval/metrics", status: "done", durationSec: 4 },
    report: { plugin: "report/html", status: "pending" },
  };
  await Deno.writeTextFile(
    join(dir, "manifest.json"),
    JSON.stringify({
      graph: "rl-tuner",
      runId: "20260101-120000-beef",
      status: "running",
      startedAt: "2026-01-01T12:00:00.000Z",
      seed: 1,
      backend: { name: "wasm-openblas", detail: "SIMD" },
      config,
      outline: outlineOf(config.stages),
      stages,
    }),
  );
  const noise = () => (random() - 0.5);
  const metrics = {
    pretrain: Array.from({ length: 300 }, (_, i) => ({
      step: i + 1,
      values: {
        "loss/train": 1.6 + 2.5 * Math.exp(-i / 60) + 0.15 * noise(),
        ...(i % 30 === 29
          ? {
            "nll/validation": 1.8 + 2.3 * Math.exp(-i / 70),
            "nll/train": 1.7 + 2.3 * Math.exp(-i / 60),
          }
          : {}),
      },
    })),
    "finetune/reward": Array.from({ length: 100 }, (_, i) => ({
      step: i + 1,
      values: {
        "reward/total": 0.2 + 0.5 * (1 - Math.exp(-i / 30)) + 0.1 * noise(),
        "reward/harmony": 0.3 + 0.4 * (1 - Math.exp(-i / 25)) + 0.15 * noise(),
        "reward/rhythm": 0.5 + 0.1 * noise(),
        "reward/novelty": 0.4 - 0.1 * (i / 100) + 0.1 * noise(),
      },
    })),
    "finetune/update": Array.from({ length: 100 }, (_, i) => ({
      step: i + 1,
      values: {
        "loss/policy": -0.02 + 0.03 * noise(),
        "kl/reference": 0.002 * i + 0.01 * random(),
        "entropy/policy": 2.2 - 0.006 * i + 0.05 * noise(),
      },
    })),
  };
  await Deno.writeTextFile(join(dir, "metrics.json"), JSON.stringify(metrics));
  await Deno.writeTextFile(
    join(dir, "events.jsonl"),
    JSON.stringify({
      time: "t",
      type: "log",
      level: "warn",
      stage: "load",
      message: 'Skipped "broken.mid": truncated header',
    }) + "\n",
  );
  const pieces = [
    makePiece("sample-000", 1),
    makePiece("sample-001", 2),
    makePiece("sample-002", 3),
  ];
  await Deno.mkdir(join(dir, "midi"));
  const files: string[] = [];
  for (const piece of pieces) {
    const path = join(dir, "midi", `${piece.id}.mid`);
    await Deno.writeFile(path, writeMidi(piece));
    files.push(path);
  }
  return { dir, pieces, files };
}

/** What the page reports about itself (computed inside Chromium). */
interface PageFacts {
  title: string;
  svgs: Array<{ kind: string; width: number; height: number; onTop: boolean }>;
  images: Array<{ complete: boolean; naturalWidth: number; width: number }>;
  lines: Array<{ width: number; height: number; stroke: string; visible: boolean }>;
  notes: number;
  audio: Array<{ readyState: number; error: number | null; duration: number }>;
}

const FACTS_SCRIPT = `(async () => {
  // Audio players load their metadata asynchronously: wait for each (at most 10 s).
  await Promise.all([...document.querySelectorAll("audio")].map((a) =>
    a.readyState >= 1 || a.error ? null : new Promise((resolve) => {
      a.addEventListener("loadedmetadata", resolve, { once: true });
      a.addEventListener("error", resolve, { once: true });
      setTimeout(resolve, 10000);
    })));
  const top = [...document.querySelectorAll("svg")].filter((s) => !s.parentElement.closest("svg"));
  const svgs = top.map((svg) => {
    svg.scrollIntoView({ block: "center", inline: "nearest" });
    const rect = svg.getBoundingClientRect();
    const hit = document.elementFromPoint(rect.left + rect.width / 2, rect.top + Math.min(rect.height / 2, 100));
    const kind = svg.closest(".graph") ? "graph" : svg.closest(".piece") ? "pianoroll" : "plot";
    return { kind, width: rect.width, height: rect.height, onTop: !!hit && svg.contains(hit) };
  });
  window.scrollTo(0, 0);
  const lines = [...document.querySelectorAll("path.line")].map((path) => {
    const box = path.getBBox();
    const style = getComputedStyle(path);
    return { width: box.width, height: box.height, stroke: path.getAttribute("stroke"),
      visible: style.visibility === "visible" && style.display !== "none" && Number(style.opacity) > 0 };
  });
  return JSON.stringify({
    title: document.title,
    svgs,
    images: [...document.images].map((i) => ({ complete: i.complete, naturalWidth: i.naturalWidth,
      width: i.getBoundingClientRect().width })),
    lines,
    notes: document.querySelectorAll("rect.note").length,
    audio: [...document.querySelectorAll("audio")].map((a) => ({ readyState: a.readyState,
      error: a.error ? a.error.code : null, duration: a.duration })),
  });
})()`;

Deno.test({
  name:
    "report.html renders in headless Chromium without errors or network requests (needs chromium)",
  ignore: CHROMIUM === undefined,
  sanitizeResources: false, // Chromium's pipes close after the process exits.
  async fn() {
    const { dir, pieces, files } = await makeRunDir();
    const userDataDir = await Deno.makeTempDir({ prefix: "harmonyrl-chromium-profile-" });
    let child: Deno.ChildProcess | undefined;
    let cdp: Cdp | undefined;
    try {
      const out = await report.run(
        testContext({ dir }),
        {
          pieces,
          files: { dir: join(dir, "midi"), files },
          metrics: {
            sets: {
              real: { pitchRange: 31.2, notesPerSec: 7.4, polyphony: 2.1, scaleConsistency: 0.93 },
              pretrained: {
                pitchRange: 22.4,
                notesPerSec: 5.2,
                polyphony: 1.8,
                scaleConsistency: 0.81,
              },
              finetuned: {
                pitchRange: 19.8,
                notesPerSec: 4.9,
                polyphony: 1.7,
                scaleConsistency: 0.9,
              },
            },
            comparisons: {
              realVsPretrained: {
                pitchRange: { overlap: 0.61, kl: 0.31 },
                notesPerSec: { overlap: 0.72, kl: 0.12 },
              },
              realVsFinetuned: {
                pitchRange: { overlap: 0.58, kl: 0.36 },
                notesPerSec: { overlap: 0.7, kl: 0.15 },
              },
            },
          },
          evaluation: {
            policies: {
              pretrained: { "reward/total": 0.21, "reward/harmony": 0.3, "kl/reference": 0 },
              finetuned: { "reward/total": 0.68, "reward/harmony": 0.71, "kl/reference": 0.19 },
            },
          },
        },
        defaultParams(report) as never,
      );
      const built = out.report as ReportOutput;

      child = new Deno.Command(CHROMIUM!, {
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-quic",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
          `--user-data-dir=${userDataDir}`,
          "--remote-debugging-port=0",
          "about:blank",
        ],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      // Chromium writes the port it picked (and the browser's WebSocket path) to this file.
      let endpoint = "";
      for (let i = 0; i < 300 && !endpoint; i++) {
        try {
          const [port, path] = (await Deno.readTextFile(join(userDataDir, "DevToolsActivePort")))
            .split("\n");
          if (port && path) endpoint = `ws://127.0.0.1:${port.trim()}${path.trim()}`;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      assert.ok(endpoint, "Chromium did not start within 30 s");
      cdp = await Cdp.connect(endpoint);
      const { targetId } = await cdp.send<{ targetId: string }>("Target.createTarget", {
        url: "about:blank",
      });
      const { sessionId } = await cdp.send<{ sessionId: string }>("Target.attachToTarget", {
        targetId,
        flatten: true,
      });

      const errors: string[] = [];
      const requests: string[] = [];
      cdp.on(({ method, params }) => {
        if (
          method === "Runtime.consoleAPICalled" &&
          (params.type === "error" || params.type === "assert")
        ) {
          errors.push(`console.${params.type}: ${JSON.stringify(params.args)}`);
        } else if (method === "Runtime.exceptionThrown") {
          errors.push(`exception: ${JSON.stringify(params.exceptionDetails)}`);
        } else if (method === "Log.entryAdded") {
          const entry = params.entry as { level: string; text: string; url?: string };
          if (entry.level === "error") errors.push(`log: ${entry.text} ${entry.url ?? ""}`);
        } else if (method === "Network.requestWillBeSent") {
          requests.push((params.request as { url: string }).url);
        }
      });
      for (const domain of ["Runtime", "Log", "Page", "Network"]) {
        await cdp.send(`${domain}.enable`, {}, sessionId);
      }
      await cdp.send(
        "Emulation.setDeviceMetricsOverride",
        { width: 1280, height: 900, deviceScaleFactor: 1, mobile: false },
        sessionId,
      );
      const loaded = cdp.waitFor("Page.loadEventFired", 30_000);
      const url = pathToFileURL(built.path).href;
      await cdp.send("Page.navigate", { url }, sessionId);
      await loaded;

      const evaluate = async (expression: string): Promise<unknown> => {
        const result = await cdp!.send<{ result: { value?: unknown }; exceptionDetails?: unknown }>(
          "Runtime.evaluate",
          { expression, awaitPromise: true, returnByValue: true },
          sessionId,
        );
        if (result.exceptionDetails) {
          throw new Error(`In the page: ${JSON.stringify(result.exceptionDetails)}`);
        }
        return result.result.value;
      };
      const facts = JSON.parse(await evaluate(FACTS_SCRIPT) as string) as PageFacts;

      // Every figure file parses as XML in the browser's own parser.
      const figureTexts = await Promise.all(built.figures.map((f) => Deno.readTextFile(f)));
      const parseErrors = await evaluate(
        `JSON.stringify(${JSON.stringify(figureTexts)}.map((text) => {
          const doc = new DOMParser().parseFromString(text, "image/svg+xml");
          const error = doc.querySelector("parsererror");
          return error ? error.textContent : doc.documentElement.nodeName === "svg" ? "" : "no <svg> root";
        }))`,
      );
      assert.deepEqual(
        JSON.parse(parseErrors as string),
        built.figures.map(() => ""),
        "figures parse",
      );

      // Full-page screenshot for a person to look at.
      const metrics = await cdp.send<{ cssContentSize: { height: number } }>(
        "Page.getLayoutMetrics",
        {},
        sessionId,
      );
      const fullHeight = Math.min(16000, Math.ceil(metrics.cssContentSize.height));
      await cdp.send(
        "Emulation.setDeviceMetricsOverride",
        { width: 1280, height: fullHeight, deviceScaleFactor: 1, mobile: false },
        sessionId,
      );
      const shot = await cdp.send<{ data: string }>(
        "Page.captureScreenshot",
        { format: "png" },
        sessionId,
      );
      await Deno.writeFile(
        "/tmp/report.png",
        Uint8Array.from(atob(shot.data), (c) => c.charCodeAt(0)),
      );

      assert.deepEqual(errors, [], "no console errors or exceptions");
      assert.deepEqual(
        requests.filter((r) => !r.startsWith("file:") && !r.startsWith("data:")),
        [],
        "no network requests",
      );
      assert.equal(facts.title, "HarmonyRL run: rl-tuner");
      // 1 graph + curves (pretrain: loss, nll; finetune/reward: reward; finetune/update: loss, kl,
      // entropy) + 3 piano rolls, all drawn with a size and not covered by anything.
      assert.equal(facts.svgs.length, built.figures.length);
      assert.deepEqual(
        facts.svgs.map((s) => s.kind),
        ["graph", ...Array(6).fill("plot"), ...Array(3).fill("pianoroll")],
      );
      for (const svg of facts.svgs) {
        assert.ok(svg.width > 100 && svg.height > 50, `${svg.kind} is ${svg.width}×${svg.height}`);
        assert.ok(svg.onTop, `${svg.kind} is visible at its centre`);
      }
      // Plots fill their grid cells: two per row in a 1280 px window.
      const plotWidths = facts.svgs.filter((s) => s.kind === "plot").map((s) => s.width);
      assert.ok(plotWidths.every((w) => w > 400 && w < 620), `plot widths ${plotWidths}`);
      for (const image of facts.images) {
        assert.ok(image.complete && image.naturalWidth > 0 && image.width > 0);
      }
      // Every curve line is drawn: coloured, visible, with extent.
      assert.ok(facts.lines.length >= 2 + 3 + 4 + 3, `${facts.lines.length} lines`);
      for (const line of facts.lines) {
        assert.ok(
          line.visible && line.stroke?.startsWith("#") && line.width > 10,
          JSON.stringify(line),
        );
      }
      assert.equal(facts.notes, pieces.reduce((n, p) => n + p.notes.length, 0));
      // Audio players load their WAVs when FluidSynth was there to render them.
      assert.equal(facts.audio.length, built.audio.length);
      for (const player of facts.audio) {
        assert.equal(player.error, null);
        assert.ok(player.readyState >= 1 && player.duration >= 15, JSON.stringify(player));
      }
    } finally {
      await cdp?.close();
      if (child) {
        try {
          child.kill("SIGTERM");
        } catch {
          // Already gone.
        }
        await child.status;
      }
      await Deno.remove(userDataDir, { recursive: true }).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});
