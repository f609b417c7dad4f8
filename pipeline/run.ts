/**
 * Executes a validated graph: plans which stages run and which come from the
 * cache, runs them in order with a context each, stores their outputs
 * atomically, runs loop blocks with carried artifacts and resumable
 * checkpoints, and keeps `manifest.json` and `events.jsonl` in the run
 * directory.
 *
 * @module
 */

import { join } from "node:path";
import {
  Cache,
  cacheKey,
  explainChange,
  type KeyParts,
  listFiles,
  writeFileAtomic,
} from "./cache.ts";
import { type Graph, graphOutline, type StageNode, stageOutputs, toMermaid } from "./graph.ts";
import { divergenceHint, DivergenceWatch, isDivergence } from "./divergence.ts";
import { FileLock } from "./lock.ts";
import { EventLog } from "./log.ts";
import { JOURNAL, keyLockPath, linkLatest, markDeadRuns, newRunId, RUN_LOCK } from "./runs.ts";
import {
  type ArtifactCodec,
  type CodecContext,
  errorMessage,
  type StageContext,
} from "./plugin.ts";
import { createRng, hashString32 } from "./rng.ts";
import { Components } from "./registry.ts";
import {
  AbortedError,
  type BackendChoice,
  hasCheckpoint,
  initBackend,
  lastValues,
  runLoop,
  runStage,
  stageMetrics,
  writtenSince,
} from "./execute.ts";
import { canonicalParams } from "./instantiate.ts";
import { fingerprints, loopExtra, loopOuterRefs, outerRefs, preflight, select } from "./plan.ts";

/** Options for {@linkcode runPipeline}. */
export interface RunOptions {
  /** Where run directories go (default `runs`). */
  runsDir?: string;
  /** Where the stage cache lives (default `<runsDir>/.cache`). */
  cacheDir?: string;
  /** Ignore cached results: every selected stage runs. */
  force?: boolean;
  /** Run only this stage; its inputs must be cached. */
  only?: string;
  /** Re-run this stage and run everything after it; earlier stages come from the cache. */
  from?: string;
  /** Run this stage and what it needs, nothing after it. */
  until?: string;
  /** Validate and print the plan without running anything. */
  dryRun?: boolean;
  /** Aborts the run cleanly (Ctrl-C). */
  signal?: AbortSignal;
  quiet?: boolean;
  verbose?: boolean;
  /** Seconds between progress lines when stderr is not a terminal (default 10). */
  progressIntervalSec?: number;
  /**
   * Points `<graph dir>/latest` at the new run (default: a symbolic link,
   * replaced atomically). The sandboxed CLI, which may not make links, asks
   * its parent process to.
   */
  linkLatest?: (graphDir: string, runId: string) => Promise<void>;
}

/** What happened to one stage. */
export interface StageRecord {
  plugin: string;
  version: string;
  status: "pending" | "cached" | "done" | "failed" | "skipped" | "interrupted" | "would-run";
  key?: string;
  reason?: string;
  durationSec?: number;
  error?: string;
  metrics?: Record<string, number>;
  /** What the stage attached with `ctx.note()`. */
  notes?: Record<string, unknown>;
  /** The run whose killed attempt at this stage this run resumed (its history is kept). */
  resumedFrom?: string;
}

/** The result of a run (or, with `dryRun`, of planning one). */
export interface RunResult {
  status: "ok" | "failed" | "interrupted" | "planned";
  runDir?: string;
  stages: Record<string, StageRecord>;
  backend?: BackendChoice;
  /** The failure, wrapped with stage and plugin names, when status is "failed". */
  error?: Error;
}

/** A stage failure: names the stage and plugin, keeps the cause. */
export class StageError extends Error {
  readonly stage: string;
  readonly plugin: string;
  constructor(stage: string, plugin: string, cause: unknown) {
    const message = errorMessage(cause);
    super(`Stage "${stage}" (${plugin}) failed: ${message}`, { cause });
    this.name = "StageError";
    this.stage = stage;
    this.plugin = plugin;
  }
}

/** A run that cannot start (e.g. --only with inputs that are not cached): nothing ran. */
export class PlanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PlanError";
  }
}

const VERSION = "0.1.0";

/**
 * Runs a validated graph.
 *
 * @param graph A graph from `loadGraph`.
 * @param options Where runs and the cache go, partial-run flags, dry-run, abort signal.
 * @returns What happened to each stage; never throws for a stage failure (see `status`).
 * @throws {Error} For a bad --only/--from/--until stage name.
 * @example
 * ```ts ignore
 * import { loadGraph, runPipeline } from "./mod.ts";
 * import { registry } from "./plugins/registry.ts";
 * const graph = await loadGraph("configs/pipeline.yaml", { registry });
 * const result = await runPipeline(graph, { runsDir: "runs" });
 * console.log(result.status, result.runDir);
 * ```
 */
export async function runPipeline(graph: Graph, options: RunOptions = {}): Promise<RunResult> {
  const runsDir = options.runsDir ?? "runs";
  const cache = new Cache(options.cacheDir ?? join(runsDir, ".cache"));
  const signal = options.signal ?? new AbortController().signal;
  const events = new EventLog(options);
  const { selected, forced } = select(graph, options);
  const stages: Record<string, StageRecord> = {};
  for (const node of graph.stages) {
    stages[node.name] = {
      plugin: node.plugin?.name ?? "loop",
      version: node.plugin?.version ?? VERSION,
      status: selected.has(node.name) ? "pending" : "skipped",
    };
  }
  // Content hash of every known output, "stage.port" -> hash; values loaded lazily.
  const hashes = new Map<string, string>();
  const keys = new Map<string, string>();
  const values = new Map<string, unknown>();
  const byName = new Map(graph.stages.map((s) => [s.name, s]));
  const sources = await fingerprints(graph);

  const stageSeed = (...parts: (string | number)[]) =>
    hashString32([graph.seed, ...parts].join("/"));
  const keyParts = (node: StageNode): KeyParts | undefined => {
    const refs = node.loop ? [...loopOuterRefs(node)] : Object.entries(node.inputs);
    const inputs: Record<string, string> = {};
    for (const [name, ref] of refs) {
      const hash = hashes.get(`${ref.stage}.${ref.output}`);
      if (hash === undefined) return undefined;
      inputs[name] = hash;
    }
    return {
      plugin: node.plugin?.name ?? "loop",
      version: node.plugin?.version ?? VERSION,
      params: canonicalParams(node.params),
      inputs,
      seed: stageSeed(node.name),
      extra: node.loop ? loopExtra(node, sources) : node.sourceHash,
      sources: node.loop ? undefined : sources.get(node.name),
    };
  };
  /** Looks a stage up in the cache; records hashes when found. */
  const lookup = async (
    node: StageNode,
  ): Promise<{ parts?: KeyParts; key?: string; hit: boolean }> => {
    const parts = keyParts(node);
    if (!parts) return { hit: false };
    const key = await cacheKey(parts);
    const entry = await cache.get(key);
    if (!entry) return { parts, key, hit: false };
    for (const [port, hash] of Object.entries(entry.outputs)) {
      hashes.set(`${node.name}.${port}`, hash);
    }
    keys.set(node.name, key);
    return { parts, key, hit: true };
  };

  // Plan: which stages can come from the cache. Unselected stages must be cached when needed.
  for (const node of graph.stages) {
    const record = stages[node.name];
    const found = await lookup(node);
    if (!selected.has(node.name)) continue;
    const missing = [...outerRefs(node).values()].filter((ref) =>
      !selected.has(ref.stage) && !hashes.has(`${ref.stage}.${ref.output}`)
    );
    if (missing.length > 0) {
      record.status = "failed";
      record.error = `Stage "${node.name}" needs ${
        missing.map((r) => `"${r.stage}.${r.output}"`).join(", ")
      },` +
        ` which has no cached result: run ${missing.map((r) => `"${r.stage}"`).join(", ")} first` +
        ` (for example with --until ${missing[0].stage})`;
    }
    if (record.status === "failed") continue;
    if (found.hit && !forced.has(node.name) && node.plugin?.cache !== false) {
      record.status = "cached";
      record.key = found.key;
    } else {
      record.status = options.dryRun ? "would-run" : "pending";
      record.reason = forced.has(node.name)
        ? "forced"
        : found.parts
        ? explainChange(await cache.lastParts(graph.name, node.name), found.parts)
        : "an input will be recomputed";
      // A missing dataset stops the run here, before the backend starts or anything runs.
      const problem = await preflight(node);
      if (problem !== undefined) {
        record.status = "failed";
        record.error = problem;
      }
    }
  }
  const planFailures = Object.entries(stages).filter(([, r]) => r.status === "failed");
  if (options.dryRun || planFailures.length > 0) {
    return {
      status: planFailures.length > 0 ? "failed" : "planned",
      stages,
      error: planFailures.length > 0
        ? new PlanError(planFailures.map(([, r]) => r.error).join("\n"))
        : undefined,
    };
  }

  // A run directory, the event log and the manifest.
  const graphDir = join(runsDir, graph.name);
  await Deno.mkdir(graphDir, { recursive: true });
  // Claim a run directory atomically (another run may pick the same id in the same second),
  // and hold its lock for the whole run: a free lock tells later runs that this one died.
  let runId = newRunId();
  while (true) {
    try {
      await Deno.mkdir(join(graphDir, runId));
      break;
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      runId = newRunId();
    }
  }
  const runDir = join(graphDir, runId);
  const runLock = await FileLock.acquire(join(runDir, RUN_LOCK));
  await events.open(join(runDir, "events.jsonl"));
  for (const dead of await markDeadRuns(runsDir, graph.name)) {
    events.log("info", `marked run "${dead}" as interrupted: its process is gone`);
  }
  await (options.linkLatest ?? linkLatest)(graphDir, runId);
  const started = new Date();
  let backend: BackendChoice | undefined;
  const writeManifest = async (status: string) => {
    const manifest = {
      harmonyrl: VERSION,
      graph: graph.name,
      file: graph.file,
      runId,
      status,
      startedAt: started.toISOString(),
      updatedAt: new Date().toISOString(),
      seed: graph.seed,
      deno: Deno.version,
      backend,
      config: graph.config,
      outline: graphOutline(graph),
      stages,
    };
    await writeFileAtomic(join(runDir, "manifest.json"), JSON.stringify(manifest, null, 2));
  };
  await writeManifest("running");
  await writeFileAtomic(join(runDir, "graph.mmd"), toMermaid(graph));
  // Metrics of every stage that ran or came from the cache, for reports: label -> steps.
  const runMetrics: Record<string, { step: number; values: Record<string, number> }[]> = {};
  const recordCachedMetrics = async (node: StageNode, key: string) => {
    const entry = await cache.get(key);
    if (entry) await cache.restorePublished(entry, runDir);
    if (entry?.notes) stages[node.name].notes = entry.notes;
    for (const [label, list] of Object.entries(entry?.metrics ?? {})) runMetrics[label] = list;
    await writeFileAtomic(join(runDir, "metrics.json"), JSON.stringify(runMetrics));
    stages[node.name].durationSec = entry?.durationSec;
  };
  for (const node of graph.stages) {
    if (stages[node.name].status === "cached") {
      await recordCachedMetrics(node, stages[node.name].key!);
    }
  }

  // Stages rebuild recorded components (a checkpoint's model) through the graph's registry.
  const components = new Components(graph.registry);
  const codecContext: CodecContext = { component: (spec, kind) => components.create(spec, kind) };
  /** Gets a top-level output value, loading it from the cache on first use. */
  const valueOf = async (stage: string, port: string): Promise<unknown> => {
    const name = `${stage}.${port}`;
    if (values.has(name)) return values.get(name);
    const node = byName.get(stage)!;
    const info = stageOutputs(node).get(port)!;
    const value = await cache.load(keys.get(stage)!, port, info.codec, codecContext);
    values.set(name, value);
    return value;
  };

  // Divergence: non-finite losses fail a stage (see divergence.ts); the hint names its learning rate.
  const watch = new DivergenceWatch();
  const paramsByLabel = new Map<string, Record<string, unknown>>();
  for (const node of graph.stages) {
    paramsByLabel.set(node.name, node.params);
    for (const body of node.loop?.body ?? []) {
      paramsByLabel.set(`${node.name}/${body.name}`, body.params);
    }
  }
  const hintFor = (label: string) => divergenceHint(paramsByLabel.get(label) ?? {});
  /** Fails a stage that ended with a non-finite loss (each body stage of a loop). */
  const checkEnd = (node: StageNode) => {
    const labels = node.loop
      ? node.loop.body.map((b) => [`${node.name}/${b.name}`, b.name])
      : [[node.name, ""]];
    for (const [label, body] of labels) {
      try {
        watch.checkEnd(label, events.history(label), {
          episodes: node.loop !== undefined,
          hint: hintFor(label),
        });
      } catch (error) {
        if (!body) throw error;
        throw new Error(`body stage "${body}": ${(error as Error).message}`, { cause: error });
      }
    }
  };

  // What each stage memoised (ctx.memo), by stage label: lives as long as this run.
  const memos = new Map<string, Map<string, unknown>>();
  const makeContext = (
    stageLabel: string,
    plugin: string,
    seed: number,
    workDir: string,
    iteration?: number,
  ): StageContext => ({
    stage: stageLabel,
    plugin,
    log: events.logger(stageLabel, plugin),
    rng: createRng(seed),
    seed,
    signal,
    runDir,
    workDir,
    backend: backend?.name ?? "none",
    iteration,
    component: codecContext.component,
    componentSpec: async (spec, kind) => {
      const { spec: full, url } = await components.resolve(spec, kind);
      return { spec: full, url };
    },
    progress: (update) => events.progress(stageLabel, update),
    metrics: (step, metricValues) => {
      events.metric(stageLabel, step, metricValues);
      watch.record(stageLabel, step, metricValues, {
        episodes: iteration !== undefined,
        hint: hintFor(stageLabel),
      });
    },
    note: (key, value) => {
      const top = stageLabel.split("/")[0];
      const record = stages[top];
      record.notes = { ...record.notes, [key]: value };
    },
    noted: (key) => stages[stageLabel.split("/")[0]].notes?.[key],
    memo: <T>(key: string, compute: () => T): T => {
      let memo = memos.get(stageLabel);
      if (!memo) memos.set(stageLabel, memo = new Map());
      if (!memo.has(key)) memo.set(key, compute());
      return memo.get(key) as T;
    },
  });

  let status: RunResult["status"] = "ok";
  let failure: Error | undefined;
  try {
    for (const node of graph.stages) {
      const record = stages[node.name];
      if (record.status !== "pending") continue;
      if (signal.aborted) throw new AbortedError();
      const cacheable = !forced.has(node.name) && node.plugin?.cache !== false;
      const takeCached = async (key: string) => {
        record.status = "cached";
        record.key = key;
        record.reason = undefined;
        await recordCachedMetrics(node, key);
        events.log("info", `cached (${key})`, { stage: node.name, plugin: record.plugin });
        events.stage(node.name, "cached");
      };
      // Upstream stages that ran may have produced the same content: check the cache again.
      let found = await lookup(node);
      if (found.hit && cacheable) {
        await takeCached(found.key!);
        continue;
      }
      const parts = found.parts!;
      const key = found.key!;
      // One run at a time computes a key; the others wait, then take its result from the cache.
      const keyLock = await FileLock.acquire(keyLockPath(cache.root, key), {
        signal,
        onWait: () =>
          events.log("info", `waiting: another run is computing this stage (${key})`, {
            stage: node.name,
            plugin: record.plugin,
          }),
      }).catch((error) => {
        throw signal.aborted ? new AbortedError() : error;
      });
      const workDir = await cache.workDir(key);
      try {
        if (cacheable) {
          found = await lookup(node);
          if (found.hit) {
            await takeCached(key);
            continue;
          }
        }
        record.reason = forced.has(node.name)
          ? "forced"
          : node.plugin?.cache === false
          ? "not cached: runs every time"
          : explainChange(await cache.lastParts(graph.name, node.name), parts);
        record.key = key;
        if (!backend && graph.backend) {
          backend = await initBackend(graph.backend, events, options.verbose ?? false);
        }
        // The manifest names the stage in progress, so a killed run can be marked interrupted.
        await writeManifest("running");
        // A killed attempt's history (metrics, log lines) is kept when its checkpoints are:
        // the stage resumes from them, and its metrics and the report show every step.
        if (!(await hasCheckpoint(workDir))) {
          await Deno.remove(join(workDir, JOURNAL)).catch(() => {});
        }
        const resumedFrom = await events.startJournal(join(workDir, JOURNAL), runId);
        if (resumedFrom !== undefined) record.resumedFrom = resumedFrom;
        events.log(
          "info",
          `running: ${record.reason}${
            resumedFrom
              ? ` (resuming the attempt of run "${resumedFrom}", whose history is kept)`
              : ""
          }`,
          { stage: node.name, plugin: record.plugin },
        );
        events.stage(node.name, "running", record.reason);
        const before = await listFiles(runDir);
        const t0 = performance.now();
        let outputs: Map<string, unknown>;
        try {
          outputs = node.loop
            ? await runLoop(node, {
              valueOf,
              makeContext,
              codecContext,
              workDir,
              stageSeed,
              events,
              signal,
            })
            : await runStage(
              node,
              valueOf,
              makeContext(node.name, node.plugin!.name, stageSeed(node.name), workDir),
            );
          if (!signal.aborted) checkEnd(node);
        } catch (error) {
          events.stopJournal();
          if (signal.aborted || error instanceof AbortedError) throw new AbortedError();
          // A diverged stage leaves nothing behind: no entry, and no checkpoint to resume from.
          if (isDivergence(error)) await Deno.remove(workDir, { recursive: true }).catch(() => {});
          throw new StageError(node.name, record.plugin, error);
        }
        events.stopJournal();
        if (signal.aborted) throw new AbortedError();
        const durationSec = (performance.now() - t0) / 1000;
        const infos = stageOutputs(node);
        const toStore = new Map<string, { value: unknown; codec: ArtifactCodec }>();
        for (const [port, info] of infos) {
          toStore.set(port, { value: outputs.get(port), codec: info.codec });
        }
        let entry;
        try {
          entry = await cache.put(key, {
            parts,
            outputs: toStore,
            durationSec,
            metrics: stageMetrics(events, node),
            published: { dir: runDir, files: await writtenSince(runDir, before) },
            notes: record.notes,
          });
        } catch (error) {
          throw new StageError(
            node.name,
            record.plugin,
            new Error(`Cannot store outputs: ${(error as Error).message}`),
          );
        }
        await cache.setLastParts(graph.name, node.name, parts);
        for (const [port, value] of outputs) values.set(`${node.name}.${port}`, value);
        for (const [port, hash] of Object.entries(entry.outputs)) {
          hashes.set(`${node.name}.${port}`, hash);
        }
        keys.set(node.name, key);
        await Deno.remove(workDir, { recursive: true }).catch(() => {});
        record.status = "done";
        record.durationSec = Math.round(durationSec * 1000) / 1000;
        record.metrics = lastValues(entry.metrics ?? {});
        for (const [label, list] of Object.entries(entry.metrics ?? {})) runMetrics[label] = list;
        await writeFileAtomic(join(runDir, "metrics.json"), JSON.stringify(runMetrics));
        events.log("info", `done in ${record.durationSec.toFixed(1)} s`, {
          stage: node.name,
          plugin: record.plugin,
        });
        events.stage(node.name, "done", undefined, durationSec);
        await writeManifest("running");
      } finally {
        events.stopJournal();
        // A work folder with no checkpoint in it has nothing to resume: do not leave it behind.
        if (!(await hasCheckpoint(workDir))) {
          await Deno.remove(workDir, { recursive: true }).catch(() => {});
        }
        keyLock.release();
      }
    }
  } catch (error) {
    const running = Object.entries(stages).find(([, r]) => r.status === "pending" && r.key);
    if (error instanceof AbortedError) {
      status = "interrupted";
      if (running) running[1].status = "interrupted";
      events.log("warn", "Interrupted: finished stages are cached; run again to resume");
    } else {
      status = "failed";
      failure = error as Error;
      if (running) {
        running[1].status = "failed";
        running[1].error = failure.message;
      }
      events.log("error", failure.message, { data: { stack: failure.stack } });
    }
  }
  await writeManifest(status);
  events.close();
  runLock.release();
  return { status, runDir, stages, backend, error: failure };
}

/** Formats the plan or result as a table for the terminal. */
export function formatStages(graph: Graph, result: RunResult): string {
  const rows: string[] = [];
  const width = Math.max(...graph.stages.map((s) => s.name.length), 5);
  for (const node of graph.stages) {
    const r = result.stages[node.name];
    const what = node.loop
      ? `loop x${node.loop.episodes} (${node.loop.body.map((b) => b.name).join(" -> ")})`
      : r.plugin;
    const detail = r.status === "cached"
      ? `from cache ${r.key}`
      : r.reason
      ? r.reason
      : r.error ?? "";
    rows.push(
      `  ${node.name.padEnd(width)}  ${r.status.padEnd(11)} ${what}${
        detail ? `  [${detail}]` : ""
      }`,
    );
  }
  return rows.join("\n");
}
