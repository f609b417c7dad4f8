/**
 * The plugin contract. Every stage of a graph (load, tokenize, pretrain,
 * rollout, reward, update, diffuse, export, ...) and every part a stage uses
 * (model architectures, tokenizers, reward terms, tensor backends) is one
 * declarative object made with {@linkcode definePlugin}. Everything except
 * `run`/`create` can be read without running anything.
 *
 * @module
 */

import type {
  ComponentKind,
  ComponentRef,
  FullComponentRef,
  Infer,
  ParamsSchema,
} from "./schema.ts";

/**
 * Kinds of plugin that run as stages of a graph. The runner knows none by
 * name: each plugin declares its own (`"load"`, `"pretrain"`, `"update"` ...
 * among the built-ins), and listings group by it.
 */
export type StageKind = string;

/** What the runner gives a codec when it loads: the components of a recorded spec. */
export interface CodecContext {
  /** As {@linkcode StageContext.component}: rebuilds a component from a spec. */
  component<T = unknown>(spec: string | ComponentRef, kind: ComponentKind): Promise<T>;
}

/**
 * Saves and loads one artifact type to and from a directory. The runner calls
 * `save` on a fresh temporary directory and renames it into place, so a codec
 * never needs to write atomically itself.
 */
export interface ArtifactCodec<T = unknown> {
  save(value: T, dir: string): Promise<void>;
  /**
   * @param dir The artifact's directory.
   * @param context Given by the runner (and by stages that load artifacts
   *   themselves): for artifacts that hold a live component rebuilt from its spec.
   */
  load(dir: string, context?: CodecContext): Promise<T>;
}

/** A named, typed input or output of a stage plugin. */
export interface PortSpec<T = unknown> {
  /**
   * The artifact type, e.g. `"midi-corpus"`, `"token-corpus"`, `"model"`.
   * An input accepts an output only when the two types are equal.
   */
  type: string;
  description: string;
  /** Inputs only: the stage may run without it. */
  optional?: boolean;
  /** Outputs only: how the runner stores it (default: JSON). */
  codec?: ArtifactCodec<T>;
}

/** The value a port carries: `T` of a `PortSpec<T>` (unknown for an untyped port). */
export type PortValue<P> = P extends PortSpec<infer T> ? T : unknown;

/** Keys of the ports that are sure to hold a value: typed with {@linkcode port}, not optional. */
type RequiredPorts<I> = {
  [K in keyof I]: I[K] extends { optional: true } ? never
    : unknown extends PortValue<I[K]> ? never
    : K;
}[keyof I];

/**
 * What a stage's `run()` receives for input ports `I`: each port's value,
 * possibly `undefined` for optional ones (and untyped ones, which are `unknown`).
 */
// deno-lint-ignore no-explicit-any
export type Inputs<I extends Record<string, PortSpec<any>>> =
  & { [K in RequiredPorts<I>]: PortValue<I[K]> }
  & { [K in Exclude<keyof I, RequiredPorts<I>>]?: PortValue<I[K]> };

/**
 * Declares a typed port, so that `run()` receives its value typed:
 * `model: port<ModelCheckpoint>({ type: "model", description: "..." })`.
 *
 * @param spec The port's type name, description, and `optional` or `codec`.
 * @returns The same spec, typed.
 * @example
 * ```ts
 * import { definePlugin, port } from "../mod.ts";
 *
 * const plugin = definePlugin({
 *   name: "user/count",
 *   kind: "eval",
 *   version: "1.0.0",
 *   description: "Counts the numbers it is given",
 *   params: {},
 *   inputs: { numbers: port<number[]>({ type: "numbers", description: "Some numbers" }) },
 *   outputs: { count: { type: "count", description: "How many" } },
 *   // inputs.numbers is a number[] here, no cast needed.
 *   run: (_ctx, inputs) => Promise.resolve({ count: inputs.numbers.length }),
 * });
 * console.log(plugin.inputs.numbers.type); // numbers
 * ```
 */
export function port<T>(spec: PortSpec<T> & { optional: true }): PortSpec<T> & { optional: true };
export function port<T>(spec: PortSpec<T>): PortSpec<T>;
export function port<T>(spec: PortSpec<T>): PortSpec<T> {
  return spec;
}

/** Levelled logger already tagged with the stage and plugin. */
export interface Logger {
  debug(message: string, data?: Record<string, unknown>): void;
  info(message: string, data?: Record<string, unknown>): void;
  warn(message: string, data?: Record<string, unknown>): void;
  error(message: string, data?: Record<string, unknown>): void;
}

/** A seeded pseudo-random generator (deterministic per stage and seed). */
export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** Standard normal. */
  normal(): number;
  /** A 32-bit seed for libraries that take one (tfjs initialisers, workers). */
  seed(): number;
  /** Internal state, to store in checkpoints. */
  getState(): number[];
  /** Restores a state from {@linkcode Rng.getState}. */
  setState(state: number[]): void;
}

/** Progress of a long stage, shown as a bar on a terminal and as periodic lines otherwise. */
export interface ProgressUpdate {
  done: number;
  total: number;
  /** What is counted: `"files"`, `"steps"`, `"episodes"`. */
  unit?: string;
  /** Short live figures, e.g. `{ loss: 2.31, "tok/s": 3100 }`. */
  info?: Record<string, number | string>;
}

/** What the runner gives a plugin when it runs. Context is an argument, not `this`. */
export interface StageContext {
  /** Stage name in the graph (inside a loop: `loop/body`). */
  stage: string;
  /** Plugin name, e.g. `"reward/harmony"`. */
  plugin: string;
  log: Logger;
  rng: Rng;
  /** The graph's seed mixed with the stage name. */
  seed: number;
  /** Aborted on Ctrl-C; long loops check it between steps. */
  signal: AbortSignal;
  /** This run's directory (`runs/<graph>/<run id>`). */
  runDir: string;
  /**
   * A directory that survives a killed run and belongs to this stage's cache
   * key: long stages keep resumable checkpoints here.
   */
  workDir: string;
  /** Name of the tensor backend that is running (`"wasm-openblas"`, `"cpu"`, ...). */
  backend: string;
  /** Loop iteration (0-based) when the stage runs inside a loop body. */
  iteration?: number;
  progress(update: ProgressUpdate): void;
  /** Records namespaced metrics (`loss/policy`, `reward/harmony`) at a step. */
  metrics(step: number, values: Record<string, number>): void;
  /**
   * Builds a component from a spec, through the registry (built-in names) or
   * by path (user modules), exactly as a component named in the graph's YAML:
   * params are checked against the plugin's schema and defaults filled in.
   * This is how a stage rebuilds the model a checkpoint records or the
   * tokenizer a token corpus records.
   *
   * @param spec A plugin name, or `{use, with}` (e.g. `ckpt.model`).
   * @param kind The component kind expected, e.g. `"tokenizer"`.
   * @returns What the plugin's `create()` returned.
   * @throws {Error} `Cannot create <kind> "<use>": <reason>`.
   */
  component<T = unknown>(spec: string | ComponentRef, kind: ComponentKind): Promise<T>;
  /**
   * Resolves a spec without creating it: the full spec (every param filled
   * in, paths made absolute) and the plugin module's URL, for a worker that
   * imports the module and creates the component itself.
   *
   * @param spec A plugin name, or `{use, with}`.
   * @param kind The component kind expected.
   * @throws {Error} `Cannot create <kind> "<use>": <reason>`.
   */
  componentSpec(
    spec: string | ComponentRef,
    kind: ComponentKind,
  ): Promise<{ spec: FullComponentRef; url?: string }>;
  /**
   * Attaches a JSON value to this stage's entry in the run's `manifest.json`
   * under `notes.<key>` (e.g. the files a loader skipped and why). Kept with
   * the cached outputs, so a cached stage's notes appear in later runs too.
   */
  note(key: string, value: unknown): void;
  /**
   * What this stage noted under `key` earlier in this run (in a loop: at an
   * earlier episode), or undefined: how a stage carries a finding from one
   * episode to the next without module state.
   */
  noted(key: string): unknown;
  /**
   * A value this stage computed earlier in this run (in a loop: at an earlier
   * episode) under `key`, or `compute()`'s result, kept for the rest of the
   * run. Held in memory only, never written: how a stage reuses something
   * costly that it derives from its inputs (the calibration of reward terms
   * on a corpus) without module state.
   */
  memo<T>(key: string, compute: () => T): T;
}

/**
 * Thrown when training diverges: a loss, gradient or output that is not finite
 * (or no longer means anything). The runner fails the stage with this message,
 * caches nothing of it and deletes its work directory, so the next run starts
 * the stage afresh instead of resuming from a diverged checkpoint. The runner
 * also throws it itself when a stage records a non-finite `loss/...` metric for
 * several steps in a row, or ends with one.
 *
 * @example
 * ```ts
 * import { DivergenceError } from "../mod.ts";
 * const nll = NaN;
 * const error = new DivergenceError(`validation NLL is ${nll} at epoch 2`, { step: 400 });
 * console.log(error.step); // 400
 * ```
 */
export class DivergenceError extends Error {
  /** The step (or loop episode index) at which divergence was seen. */
  readonly step?: number;
  constructor(message: string, options: { step?: number; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "DivergenceError";
    this.step = options.step;
  }
}

/**
 * What a plugin needs from the machine besides the project, the runs folder
 * and the paths in its params (`p.string({ path: "read" })`). The sandbox
 * that runs a graph grants the union of what its plugins declare, and
 * nothing else. Honoured for built-in plugins only: a plugin loaded by path
 * runs with what the built-ins of its graph need (see the README).
 */
export interface PluginPermissions {
  /** Programs the plugin starts, by name on the PATH (e.g. `["fluidsynth"]`). */
  run?: string[];
  /** Environment variables it reads. */
  env?: string[];
  /** Files or folders it reads, e.g. system SoundFonts. */
  read?: string[];
  /** Files or folders it writes besides the runs folder, e.g. a cache of compiled kernels. */
  write?: string[];
  /** True when it opens native libraries by name (FFI), e.g. OpenBLAS. */
  ffi?: boolean;
}

/** Declarative fields shared by stage and component plugins. */
interface PluginBase<S extends ParamsSchema> {
  /** `"kind/name"` for built-ins, e.g. `"reward/harmony"`; any unique name for user plugins. */
  name: string;
  version: string;
  description: string;
  params: S;
  /**
   * What it needs from the machine, when more than the project, the runs
   * folder and its path params: a value, or a function of its params.
   */
  permissions?: PluginPermissions | ((params: Infer<S>) => PluginPermissions);
}

/** What a stage's `preflight` found missing. */
export interface PreflightProblem {
  /** The param that names the missing thing, e.g. `"dir"`. */
  param: string;
  /**
   * What is wrong and how to get it, e.g. `Cannot load MAESTRO from "data/x": the directory
   * does not exist; download ...`.
   */
  message: string;
}

/** A plugin that runs as a stage of a graph. */
export interface StagePlugin<
  S extends ParamsSchema = ParamsSchema,
  // deno-lint-ignore no-explicit-any
  I extends Record<string, PortSpec<any>> = Record<string, PortSpec<any>>,
> extends PluginBase<S> {
  kind: StageKind;
  /** Input ports by name; declare them with {@linkcode port} to get typed `inputs` in `run`. */
  inputs: I;
  outputs: Record<string, PortSpec>;
  /**
   * `false` for stages that must run every time (a report of this run);
   * default `true`: outputs are cached by key.
   */
  cache?: boolean;
  /**
   * Metrics worth a glance while a loop runs (e.g. `["reward/total"]`): the
   * loop's progress line shows the latest value of each its body records.
   */
  headlineMetrics?: readonly string[];
  /**
   * Checks, before anything runs, that what the stage reads from outside the
   * graph is there (a dataset folder, a checkpoint), so that a missing one
   * stops the run at once with one message rather than after earlier stages
   * ran. The runner calls it for every stage that is about to run (not for
   * cached ones) and, for a problem, adds how to set the param with `--set`.
   *
   * @param params Params with defaults filled in (components not created yet).
   * @returns The problem and the param it concerns, or undefined when all is there.
   */
  preflight?(params: Infer<S>): Promise<PreflightProblem | undefined>;
  /**
   * What the stage reads besides its inputs (files, folders), as a JSON value
   * that changes when they change, e.g. `fingerprintFiles(dir, files)`: each
   * file's size and modification time. The runner calls it when it plans a
   * run, adds it to the stage's cache key, and when it changes re-runs the
   * stage and says what changed (`files changed: added "c.mid"`). It must only
   * read, and be quick: stat files, do not read them. Without it, a stage that
   * reads files is cached by its params alone and misses their changes.
   *
   * @param params Params with defaults filled in and components created.
   * @returns Any JSON value; an error is recorded as the fingerprint, and the stage runs.
   */
  fingerprint?(params: Infer<S>): Promise<unknown>;
  /**
   * Runs the stage.
   *
   * @param ctx The stage's context.
   * @param inputs Input artifacts by port name (optional ones may be undefined).
   * @param params Params with defaults filled in and components created.
   * @returns Output artifacts by port name; every declared output must be present.
   */
  run(
    ctx: StageContext,
    inputs: Inputs<I>,
    params: Infer<S>,
  ): Promise<Record<string, unknown>>;
}

/** A plugin used inside a stage's params: a model, a tokenizer, a reward term, a backend. */
export interface ComponentPlugin<S extends ParamsSchema = ParamsSchema, T = unknown>
  extends PluginBase<S> {
  kind: ComponentKind;
  /**
   * Builds the component from its params.
   *
   * @param params Params with defaults filled in and nested components created.
   * @param self This component's own full spec (`use` and every param), which
   *   a component records where it must be rebuilt later (a model in its
   *   checkpoints, a tokenizer in its token corpora). The runner always gives
   *   it; a test that calls `create()` directly may leave it out.
   * @returns The component object the enclosing stage uses.
   */
  create(params: Infer<S>, self?: FullComponentRef): T;
}

/** Any plugin. */
// deno-lint-ignore no-explicit-any
export type Plugin = StagePlugin<any> | ComponentPlugin<any, any>;

/** True when the plugin runs as a stage (it has `run`), false for components. */
export function isStagePlugin(plugin: Plugin): plugin is StagePlugin {
  return typeof (plugin as StagePlugin).run === "function";
}

const NAME_RE = /^[a-z0-9][a-z0-9._-]*(\/[a-z0-9][a-z0-9._-]*)*$/;

/**
 * Declares a plugin. Checks the declaration's shape at once, so a broken
 * plugin fails when it is loaded, not an hour into a run.
 *
 * @param plugin The declaration: name, kind, version, description, params,
 *   and either `inputs`, `outputs`, `run` (a stage) or `create` (a component).
 * @returns The same object, typed.
 * @throws {Error} When a required field is missing or malformed.
 * @example
 * ```ts
 * import { definePlugin, p, type Piece } from "../mod.ts";
 *
 * export default definePlugin({
 *   name: "reward/pitch-range",
 *   kind: "reward",
 *   version: "1.0.0",
 *   description: "Rewards pieces whose pitch range stays within maxSemitones",
 *   params: {
 *     maxSemitones: p.number({ default: 12, min: 1, description: "Widest range that scores 1" }),
 *   },
 *   create: (params) => ({
 *     // One score per piece, each in [0, 1].
 *     score(pieces: Piece[]): number[] {
 *       return pieces.map((piece) => {
 *         const pitches = piece.notes.map((n) => n.pitch);
 *         const range = Math.max(...pitches) - Math.min(...pitches);
 *         return range <= params.maxSemitones ? 1 : params.maxSemitones / range;
 *       });
 *     },
 *   }),
 * });
 * ```
 */
export function definePlugin<
  const S extends ParamsSchema,
  // deno-lint-ignore no-explicit-any
  const I extends Record<string, PortSpec<any>>,
>(plugin: StagePlugin<S, I>): StagePlugin<S, I>;
export function definePlugin<const S extends ParamsSchema, T>(
  plugin: ComponentPlugin<S, T>,
): ComponentPlugin<S, T>;
export function definePlugin(plugin: Plugin): Plugin {
  const where = `Cannot define plugin ${JSON.stringify(plugin?.name ?? "(unnamed)")}`;
  if (typeof plugin !== "object" || plugin === null) throw new Error(`${where}: not an object`);
  if (typeof plugin.name !== "string" || !NAME_RE.test(plugin.name)) {
    throw new Error(
      `${where}: name must be lowercase words separated by "/", e.g. "reward/harmony"`,
    );
  }
  for (const field of ["kind", "version", "description"] as const) {
    if (typeof plugin[field] !== "string" || plugin[field] === "") {
      throw new Error(`${where}: "${field}" must be a non-empty string`);
    }
  }
  if (typeof plugin.params !== "object" || plugin.params === null) {
    throw new Error(`${where}: "params" must be an object (use {} for none)`);
  }
  for (const [key, spec] of Object.entries(plugin.params as ParamsSchema)) {
    if (typeof spec?.description !== "string" || spec.description === "") {
      throw new Error(`${where}: param "${key}" needs a description`);
    }
  }
  const isStage = typeof (plugin as StagePlugin).run === "function";
  const isComponent = typeof (plugin as ComponentPlugin).create === "function";
  if (isStage === isComponent) {
    throw new Error(`${where}: give exactly one of run() (a stage) or create() (a component)`);
  }
  if (isStage) {
    const stage = plugin as StagePlugin;
    if (typeof stage.inputs !== "object" || typeof stage.outputs !== "object") {
      throw new Error(`${where}: a stage plugin needs "inputs" and "outputs" objects`);
    }
  }
  return plugin;
}

/**
 * The message of anything thrown, for error messages that wrap a cause.
 *
 * @param error What was thrown.
 * @returns Its `message` when it is an `Error`, else it as a string.
 * @example
 * ```ts
 * import { errorMessage } from "../mod.ts";
 * console.log(errorMessage(new Error("no such file"))); // no such file
 * console.log(errorMessage("plain")); // plain
 * ```
 */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The first line of what was thrown: for one-line reasons in logs and in the errors that
 * wrap it (library loaders and compilers write several lines).
 *
 * @param error What was thrown.
 * @returns The first line of its message: an `Error`'s, or any object's `message`, else it as
 *   a string.
 * @example
 * ```ts
 * import { errorFirstLine } from "../mod.ts";
 * console.log(errorFirstLine(new Error("cannot open\n  at x.ts:1"))); // cannot open
 * ```
 */
export function errorFirstLine(error: unknown): string {
  const message = error instanceof Error
    ? error.message
    : (error as { message?: unknown } | null)?.message ?? error;
  return String(message).split("\n")[0];
}

/** JSON codec: the default for outputs without one. */
export const jsonCodec: ArtifactCodec = {
  async save(value, dir) {
    await Deno.writeTextFile(`${dir}/value.json`, JSON.stringify(value));
  },
  async load(dir) {
    return JSON.parse(await Deno.readTextFile(`${dir}/value.json`));
  },
};
