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
import {
  type Graph,
  type ResolvedComponent,
  type StageNode,
  stageOutputs,
  toMermaid,
} from "./graph.ts";
import { divergenceHint, DivergenceWatch, isDivergence } from "./divergence.ts";
import { FileLock } from "./lock.ts";
import { EventLog } from "./log.ts";
import { JOURNAL, keyLockPath, markDeadRuns, RUN_LOCK } from "./runs.ts";
import type { ArtifactCodec, CodecContext, Plugin, StageContext } from "./plugin.ts";
import { createRng, hashString32 } from "./rng.ts";
import { Components } from "./registry.ts";
import type { FullComponentRef, ParamsSchema, WeightedComponent } from "./schema.ts";

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

/**
 * Points `<graphDir>/latest` at `runId` with a symbolic link, atomically.
 *
 * @param graphDir The graph's folder of runs.
 * @param runId The run directory's name in it.
 */
export async function linkLatest(graphDir: string, runId: string): Promise<void> {
  const latest = join(graphDir, "latest");
  const tmpLink = `${latest}.tmp-${runId}`;
  await Deno.symlink(runId, tmpLink);
  await Deno.rename(tmpLink, latest);
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
    const message = cause instanceof Error ? cause.message : String(cause);
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

class AbortedError extends Error {
  constructor() {
    super("Interrupted");
    this.name = "AbortedError";
  }
}

const VERSION = "0.1.0";

/** Canonical form of resolved params for the cache key: components by name and version. */
function canonicalParams(params: Record<string, unknown>): unknown {
  const one = (value: unknown): unknown => {
    if (isResolvedComponent(value)) {
      return {
        use: value.plugin.name,
        version: value.plugin.version,
        weight: value.weight,
        with: canonicalParams(value.params),
        ...(value.sourceHash ? { source: value.sourceHash } : {}),
      };
    }
    if (Array.isArray(value)) return value.map(one);
    return value;
  };
  return Object.fromEntries(Object.entries(params).map(([k, v]) => [k, one(v)]));
}

function isResolvedComponent(value: unknown): value is ResolvedComponent {
  return typeof value === "object" && value !== null && "plugin" in value && "use" in value &&
    "params" in value;
}

/**
 * A resolved component's full spec, as its `create()` receives it and as
 * checkpoints record it: a built-in by name, a user module by absolute path.
 */
function fullSpec(c: ResolvedComponent): FullComponentRef {
  const one = (value: unknown): unknown =>
    isResolvedComponent(value)
      ? { ...fullSpec(value), ...(value.weight !== 1 ? { weight: value.weight } : {}) }
      : Array.isArray(value)
      ? value.map(one)
      : value;
  return {
    use: c.path ?? c.use,
    with: Object.fromEntries(Object.entries(c.params).map(([k, v]) => [k, one(v)])),
  };
}

/** Creates the components named in params (recursively), as plugins receive them. */
function instantiate(plugin: Plugin, params: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(plugin.params as ParamsSchema)) {
    const value = params[key];
    if (spec.type === "component") {
      const c = value as ResolvedComponent;
      out[key] = c.plugin.create(instantiate(c.plugin, c.params), fullSpec(c));
    } else if (spec.type === "components") {
      out[key] = (value as ResolvedComponent[]).map((c): WeightedComponent => ({
        name: c.plugin.name,
        weight: c.weight,
        component: c.plugin.create(instantiate(c.plugin, c.params), fullSpec(c)),
      }));
    } else {
      out[key] = value;
    }
  }
  return out;
}

/** Describes a stage's params, inputs and body for the key (loops hash their whole body). */
function loopExtra(node: StageNode, sources: Map<string, unknown>): unknown {
  const loop = node.loop!;
  return {
    episodes: loop.episodes,
    carry: loop.carry,
    body: loop.body.map((s) => ({
      name: s.name,
      plugin: s.plugin!.name,
      version: s.plugin!.version,
      source: s.sourceHash,
      params: canonicalParams(s.params),
      inputs: s.inputs,
      sources: sources.get(`${node.name}/${s.name}`),
    })),
  };
}

/**
 * What each stage reads besides its inputs, by stage label, from the plugins'
 * `fingerprint` hooks. A hook that throws gives `{ unreadable: message }`: the
 * stage then runs and reports the problem itself.
 */
async function fingerprints(graph: Graph): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  const one = async (label: string, node: StageNode) => {
    const plugin = node.plugin;
    if (!plugin?.fingerprint) return;
    try {
      out.set(label, await plugin.fingerprint(instantiate(plugin, node.params)));
    } catch (error) {
      out.set(label, { unreadable: error instanceof Error ? error.message : String(error) });
    }
  };
  for (const node of graph.stages) {
    await one(node.name, node);
    for (const body of node.loop?.body ?? []) await one(`${node.name}/${body.name}`, body);
  }
  return out;
}

/** Outer references a loop needs: carry inits and body inputs that point outside the body. */
function loopOuterRefs(node: StageNode): Map<string, { stage: string; output: string }> {
  const refs = new Map<string, { stage: string; output: string }>();
  const bodyNames = new Set(node.loop!.body.map((s) => s.name));
  for (const carry of Object.values(node.loop!.carry)) {
    refs.set(`${carry.init.stage}.${carry.init.output}`, carry.init);
  }
  for (const stage of node.loop!.body) {
    for (const ref of Object.values(stage.inputs)) {
      if (!bodyNames.has(ref.stage) && ref.stage !== node.name) {
        refs.set(`${ref.stage}.${ref.output}`, ref);
      }
    }
  }
  return refs;
}

/** Every outer reference a top-level stage reads, as "stage.output". */
function outerRefs(node: StageNode): Map<string, { stage: string; output: string }> {
  if (node.loop) return loopOuterRefs(node);
  return new Map(Object.values(node.inputs).map((ref) => [`${ref.stage}.${ref.output}`, ref]));
}

/**
 * Runs the `preflight` of a stage (of each body stage for a loop): the first
 * problem as one line that names the stage and the `--set` path of the param.
 */
async function preflight(node: StageNode): Promise<string | undefined> {
  const checks = node.loop
    ? node.loop.body.map((stage) => ({
      stage,
      label: `${node.name}/${stage.name}`,
      path: `stages.${node.name}.loop.stages.${stage.name}.with`,
    }))
    : [{ stage: node, label: node.name, path: `stages.${node.name}.with` }];
  for (const { stage, label, path } of checks) {
    const problem = await stage.plugin?.preflight?.(stage.params);
    if (problem !== undefined) {
      return `Stage "${label}" (${stage.plugin!.name}) cannot run: ${problem.message}; ` +
        `or point "${problem.param}" elsewhere with --set ${path}.${problem.param}=...`;
    }
  }
  return undefined;
}

/** Which stages are selected by --only/--from/--until, and which are forced. */
function select(graph: Graph, options: RunOptions): { selected: Set<string>; forced: Set<string> } {
  const names = graph.stages.map((s) => s.name);
  const byName = new Map(graph.stages.map((s) => [s.name, s]));
  for (const flag of ["only", "from", "until"] as const) {
    const value = options[flag];
    if (value !== undefined && !byName.has(value)) {
      throw new Error(
        `Unknown stage "${value}" for --${flag}: stages are ${
          names.map((n) => `"${n}"`).join(", ")
        }`,
      );
    }
  }
  const descendants = (start: string): Set<string> => {
    const out = new Set([start]);
    for (const stage of graph.stages) {
      if (stage.deps.some((d) => out.has(d))) out.add(stage.name);
    }
    return out;
  };
  const ancestors = (start: string): Set<string> => {
    const out = new Set<string>();
    const visit = (name: string) => {
      if (out.has(name)) return;
      out.add(name);
      for (const dep of byName.get(name)!.deps) visit(dep);
    };
    visit(start);
    return out;
  };
  let selected = new Set(names);
  const forced = new Set<string>(options.force ? names : []);
  if (options.only) {
    selected = new Set([options.only]);
    forced.add(options.only);
  }
  if (options.from) {
    selected = new Set([...selected].filter((n) => descendants(options.from!).has(n)));
    forced.add(options.from);
  }
  if (options.until) {
    selected = new Set([...selected].filter((n) => ancestors(options.until!).has(n)));
  }
  return { selected, forced };
}

/** Run id: UTC time plus a short random suffix, sortable. */
function newRunId(): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");
  return `${stamp}-${crypto.randomUUID().slice(0, 4)}`;
}

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

/** True when a work folder holds something besides the stage's journal (a checkpoint). */
async function hasCheckpoint(workDir: string): Promise<boolean> {
  try {
    for await (const entry of Deno.readDir(workDir)) if (entry.name !== JOURNAL) return true;
  } catch {
    // no folder: nothing to resume
  }
  return false;
}

/** Files the runner itself keeps in a run directory; never attributed to a stage. */
const RUNNER_FILES = new Set([
  "manifest.json",
  "events.jsonl",
  "metrics.json",
  "graph.mmd",
  RUN_LOCK,
]);

/** Files written or changed in `runDir` since the `before` listing (a stage's published files). */
async function writtenSince(runDir: string, before: Map<string, number>): Promise<string[]> {
  const after = await listFiles(runDir);
  return [...after].filter(([file, mtime]) =>
    !RUNNER_FILES.has(file) && !file.includes(".tmp-") && before.get(file) !== mtime
  ).map(([file]) => file).sort();
}

/** A few of the body's metrics at this episode, for the loop's progress line. */
function headlineMetrics(
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
function stageMetrics(
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
function lastValues(
  metrics: Record<string, { step: number; values: Record<string, number> }[]>,
): Record<string, number> | undefined {
  const out: Record<string, number> = {};
  for (const list of Object.values(metrics)) {
    for (const { values } of list) Object.assign(out, values);
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/**
 * Starts the graph's backend and says so in one line: which backend and why. The backends
 * tried and skipped (and the libraries looked for) go to the debug log, shown with --verbose.
 */
async function initBackend(
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
function backendLine(info: BackendChoice, verbose: boolean): string {
  const skipped = info.skipped?.length ?? 0;
  const hint = skipped === 0 || verbose
    ? ""
    : `; ${skipped} faster ${skipped === 1 ? "one" : "ones"} skipped (--verbose says why)`;
  return `${info.name} (${info.detail})${info.reason ? `: ${info.reason}` : ""}${hint}`;
}

type ValueOf = (stage: string, port: string) => Promise<unknown>;
type MakeContext = (
  stage: string,
  plugin: string,
  seed: number,
  workDir: string,
  iteration?: number,
) => StageContext;

/** Runs one plugin stage and checks that it returned every declared output. */
async function runStage(
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
async function runLoop(
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
        const cause = error instanceof Error ? error.message : String(error);
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
