/**
 * Execution helpers of `runPipeline`: running one stage or a loop block with
 * its carried artifacts and resumable checkpoints, starting the backend, and
 * reading back what stages wrote and measured.
 *
 * @module
 */

import { join } from "node:path";
import { listFiles, writeFileAtomic } from "./cache.ts";
import { type ResolvedComponent, type StageNode, stageOutputs } from "./graph.ts";
import { fullSpec, instantiate } from "./instantiate.ts";
import type { EventLog } from "./log.ts";
import { type CodecContext, errorMessage, type StageContext } from "./plugin.ts";
import { JOURNAL, RUN_LOCK } from "./runs.ts";

/** Thrown inside the runner when the run's signal aborts. */
export class AbortedError extends Error {
  constructor() {
    super("Interrupted");
    this.name = "AbortedError";
  }
}

/** True when a work folder holds something besides the stage's journal (a checkpoint). */
export async function hasCheckpoint(workDir: string): Promise<boolean> {
  try {
    for await (const entry of Deno.readDir(workDir)) if (entry.name !== JOURNAL) return true;
  } catch {
    // no folder: nothing to resume
  }
  return false;
}

/** Files the runner itself keeps in a run directory; never attributed to a stage. */
export const RUNNER_FILES = new Set([
  "manifest.json",
  "events.jsonl",
  "metrics.json",
  "graph.mmd",
  RUN_LOCK,
]);

/** Files written or changed in `runDir` since the `before` listing (a stage's published files). */
export async function writtenSince(runDir: string, before: Map<string, number>): Promise<string[]> {
  const after = await listFiles(runDir);
  return [...after].filter(([file, mtime]) =>
    !RUNNER_FILES.has(file) && !file.includes(".tmp-") && before.get(file) !== mtime
  ).map(([file]) => file).sort();
}

/** A few of the body's metrics at this episode, for the loop's progress line. */
export function headlineMetrics(
  events: EventLog,
  node: StageNode,
  episode: number,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const body of node.loop!.body) {
    const last = events.metrics.get(`${node.name}/${body.name}`)?.at(-1);
    if (!last || last.step !== episode) continue;
    for (const name of body.plugin?.headlineMetrics ?? []) {
      if (name in last.values && !(name in out)) out[name] = last.values[name];
    }
  }
  return out;
}

/** Every metric a stage recorded, by label (a loop has one label per body stage). */
export function stageMetrics(
  events: EventLog,
  node: StageNode,
): Record<string, { step: number; values: Record<string, number> }[]> {
  const labels = node.loop ? node.loop.body.map((b) => `${node.name}/${b.name}`) : [node.name];
  // The whole history: a resumed stage keeps what its killed attempt recorded.
  const known = new Set(events.historyLabels());
  return Object.fromEntries(
    labels.filter((l) => known.has(l)).map((l) => [l, events.history(l)]),
  );
}

/** The last value of every metric in a stage's metric history (undefined when none). */
export function lastValues(
  metrics: Record<string, { step: number; values: Record<string, number> }[]>,
): Record<string, number> | undefined {
  const out: Record<string, number> = {};
  for (const list of Object.values(metrics)) {
    for (const { values } of list) Object.assign(out, values);
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Which tensor backend a run uses, and why (the run's manifest records it). */
export interface BackendChoice {
  /** The backend that runs, e.g. `"wasm-openblas"`. */
  name: string;
  /** What runs, in a few words, e.g. `"SIMD on, 1 thread"`. */
  detail: string;
  /** Why this one, e.g. `"auto" picked the fastest that starts here`. */
  reason?: string;
  /** Backends tried before it that could not start, with why (shown with --verbose). */
  skipped?: { name: string; reason: string }[];
}

/** What a backend component's `create()` returns. */
export interface BackendHandle {
  /**
   * Loads and selects the backend.
   *
   * @param log Receives details for the verbose log (backends tried and skipped, libraries).
   * @returns What runs and why.
   */
  init(log: (message: string) => void): Promise<BackendChoice>;
}

/**
 * Starts the graph's backend and says so in one line: which backend and why. The backends
 * tried and skipped (and the libraries looked for) go to the debug log, shown with --verbose.
 */
export async function initBackend(
  component: ResolvedComponent,
  events: EventLog,
  verbose: boolean,
): Promise<BackendChoice> {
  const handle = component.plugin.create(
    instantiate(component.plugin, component.params),
    fullSpec(component),
  ) as BackendHandle;
  const info = await handle.init((message) => events.log("debug", message, { stage: "backend" }));
  events.log("info", backendLine(info, verbose), { stage: "backend" });
  return info;
}

/**
 * The one line that says which backend runs and why, e.g. `wasm (SIMD on, 1 thread): "auto"
 * picked the fastest that starts here; 4 faster ones skipped (--verbose says why)`.
 *
 * @param info What the backend component started.
 * @param verbose Whether the skipped backends were logged already (no pointer to --verbose then).
 * @returns The line, without the `backend: ` tag.
 */
export function backendLine(info: BackendChoice, verbose: boolean): string {
  const skipped = info.skipped?.length ?? 0;
  const hint = skipped === 0 || verbose
    ? ""
    : `; ${skipped} faster ${skipped === 1 ? "one" : "ones"} skipped (--verbose says why)`;
  return `${info.name} (${info.detail})${info.reason ? `: ${info.reason}` : ""}${hint}`;
}

export type ValueOf = (stage: string, port: string) => Promise<unknown>;
export type MakeContext = (
  stage: string,
  plugin: string,
  seed: number,
  workDir: string,
  iteration?: number,
) => StageContext;

/** Runs one plugin stage and checks that it returned every declared output. */
export async function runStage(
  node: StageNode,
  valueOf: ValueOf,
  ctx: StageContext,
  params?: Record<string, unknown>,
  inputValues?: Record<string, unknown>,
): Promise<Map<string, unknown>> {
  const plugin = node.plugin!;
  let inputs = inputValues;
  if (!inputs) {
    inputs = {};
    for (const [port, ref] of Object.entries(node.inputs)) {
      inputs[port] = await valueOf(ref.stage, ref.output);
    }
  }
  const result = await plugin.run(ctx, inputs, params ?? instantiate(plugin, node.params));
  if (typeof result !== "object" || result === null) {
    throw new Error(
      `run() returned ${result === null ? "null" : typeof result}, not an object of outputs`,
    );
  }
  const outputs = new Map<string, unknown>();
  for (const port of Object.keys(plugin.outputs)) {
    if (!(port in result) || result[port] === undefined) {
      throw new Error(`run() returned no value for output "${port}"`);
    }
    outputs.set(port, result[port]);
  }
  return outputs;
}

/**
 * Runs a loop block: the body stages in order, `episodes` times, carrying
 * values from one episode to the next. Every `checkpointEvery` episodes the
 * carried values are saved (atomically) in the work directory, so a killed run
 * resumes from the last checkpoint.
 */
export async function runLoop(
  node: StageNode,
  env: {
    valueOf: ValueOf;
    makeContext: MakeContext;
    codecContext: CodecContext;
    workDir: string;
    stageSeed: (...parts: (string | number)[]) => number;
    events: EventLog;
    signal: AbortSignal;
  },
): Promise<Map<string, unknown>> {
  const loop = node.loop!;
  const codecs = stageOutputs(node);
  const carried = new Map<string, unknown>();
  let start = 0;
  const statePath = join(env.workDir, "loop.json");
  try {
    const state = JSON.parse(await Deno.readTextFile(statePath)) as {
      episode: number;
      dir: string;
    };
    for (const name of Object.keys(loop.carry)) {
      carried.set(
        name,
        await codecs.get(name)!.codec.load(join(env.workDir, state.dir, name), env.codecContext),
      );
    }
    start = state.episode;
    env.events.log("info", `resuming at episode ${start + 1} of ${loop.episodes}`, {
      stage: node.name,
    });
  } catch {
    carried.clear();
    for (const [name, carry] of Object.entries(loop.carry)) {
      carried.set(name, await env.valueOf(carry.init.stage, carry.init.output));
    }
  }
  // Components are created once per loop, not once per episode.
  const bodyParams = new Map(loop.body.map((s) => [s.name, instantiate(s.plugin!, s.params)]));
  const bodyNames = new Set(loop.body.map((s) => s.name));
  for (let episode = start; episode < loop.episodes; episode++) {
    if (env.signal.aborted) throw new AbortedError();
    const produced = new Map<string, unknown>();
    for (const stage of loop.body) {
      const inputs: Record<string, unknown> = {};
      for (const [port, ref] of Object.entries(stage.inputs)) {
        if (ref.stage === node.name) inputs[port] = carried.get(ref.output);
        else if (bodyNames.has(ref.stage)) {
          inputs[port] = produced.get(`${ref.stage}.${ref.output}`);
        } else inputs[port] = await env.valueOf(ref.stage, ref.output);
      }
      const label = `${node.name}/${stage.name}`;
      const ctx = env.makeContext(
        label,
        stage.plugin!.name,
        env.stageSeed(node.name, stage.name, episode),
        env.workDir,
        episode,
      );
      let outputs: Map<string, unknown>;
      try {
        outputs = await runStage(stage, env.valueOf, ctx, bodyParams.get(stage.name), inputs);
      } catch (error) {
        if (env.signal.aborted) throw new AbortedError();
        const cause = errorMessage(error);
        throw new Error(
          `episode ${episode + 1}, body stage "${stage.name}" (${stage.plugin!.name}): ${cause}`,
          {
            cause: error,
          },
        );
      }
      for (const [port, value] of outputs) produced.set(`${stage.name}.${port}`, value);
    }
    for (const [name, carry] of Object.entries(loop.carry)) {
      carried.set(name, produced.get(`${carry.next.stage}.${carry.next.output}`));
    }
    env.events.progress(node.name, {
      done: episode + 1,
      total: loop.episodes,
      unit: "episodes",
      info: headlineMetrics(env.events, node, episode),
    });
    const last = episode + 1 === loop.episodes;
    if (!last && (episode + 1) % loop.checkpointEvery === 0) {
      const dir = `episode-${episode + 1}`;
      await Deno.remove(join(env.workDir, dir), { recursive: true }).catch(() => {});
      for (const [name, value] of carried) {
        await Deno.mkdir(join(env.workDir, dir, name), { recursive: true });
        await codecs.get(name)!.codec.save(value, join(env.workDir, dir, name));
      }
      const previous = await Deno.readTextFile(statePath).then((t) => JSON.parse(t).dir).catch(() =>
        ""
      );
      await writeFileAtomic(statePath, JSON.stringify({ episode: episode + 1, dir }));
      if (previous && previous !== dir) {
        await Deno.remove(join(env.workDir, previous), { recursive: true }).catch(() => {});
      }
    }
  }
  return carried;
}
