/**
 * HarmonyRL's public contract for plugin authors: declare a plugin with
 * `definePlugin`, describe its params with `p`, type a stage's inputs with
 * `port<T>()` and the artifact types below, and run graphs with
 * `runPipeline`. A plugin needs nothing else from the project.
 *
 * The artifact types, by port type: `midi-corpus` {@linkcode MidiCorpus},
 * `pieces` `Piece[]`, `token-corpus` {@linkcode TokenCorpus}, `model`
 * {@linkcode ModelCheckpoint}, `rollouts` {@linkcode Rollouts}, `rewards`
 * {@linkcode Rewards}, `critic` {@linkcode Critic}, `denoiser`
 * {@linkcode Denoiser}, `files` {@linkcode ExportedFiles}, `metrics`
 * {@linkcode Metrics}.
 *
 * @example A user stage with a typed input
 * ```ts
 * import { definePlugin, type MidiCorpus, port } from "./mod.ts";
 *
 * export default definePlugin({
 *   name: "user/note-count",
 *   kind: "eval",
 *   version: "1.0.0",
 *   description: "Counts the notes of a corpus's pieces",
 *   params: {},
 *   inputs: { corpus: port<MidiCorpus>({ type: "midi-corpus", description: "Pieces" }) },
 *   outputs: { counts: { type: "metrics", description: "Notes per piece id" } },
 *   // inputs.corpus is a MidiCorpus here: no cast.
 *   run: (_ctx, inputs) =>
 *     Promise.resolve({
 *       counts: Object.fromEntries(inputs.corpus.pieces.map((p) => [p.id, p.notes.length])),
 *     }),
 * });
 * ```
 *
 * @module
 */

export {
  definePlugin,
  DivergenceError,
  errorFirstLine,
  errorMessage,
  isStagePlugin,
  jsonCodec,
  port,
} from "./pipeline/plugin.ts";
export type {
  ArtifactCodec,
  CodecContext,
  ComponentPlugin,
  Inputs,
  Logger,
  Plugin,
  PluginPermissions,
  PortSpec,
  PortValue,
  PreflightProblem,
  ProgressUpdate,
  Rng,
  StageContext,
  StageKind,
  StagePlugin,
} from "./pipeline/plugin.ts";
export {
  asBytes,
  assertLittleEndian,
  blockReader,
  checkIndex,
  readBlock,
  readIndex,
  readSized,
  writeBlocks,
} from "./pipeline/binary_codec.ts";
export type { BinaryFormat, IndexHeader, TypedArrayClass } from "./pipeline/binary_codec.ts";
export { fingerprintFiles } from "./pipeline/fingerprint.ts";
export { writeFileAtomic } from "./pipeline/cache.ts";
export { createRng, hashString32 } from "./pipeline/rng.ts";
export { p, systemFolder } from "./pipeline/schema.ts";
export type {
  ComponentKind,
  ComponentRef,
  FullComponentRef,
  Infer,
  ParamSpec,
  ParamsSchema,
  WeightedComponent,
} from "./pipeline/schema.ts";
export { GraphError, loadGraph, parseGraph } from "./pipeline/graph.ts";
export type { Graph, Registry } from "./pipeline/graph.ts";
export { PlanError, runPipeline, StageError } from "./pipeline/run.ts";
export type { RunOptions, RunResult, StageRecord } from "./pipeline/run.ts";
export type { MidiCorpus, Note, Piece, Split } from "./plugins/_music/types.ts";
export type {
  Critic,
  CriticConfig,
  ExportedFiles,
  Metrics,
  PartialRewards,
  PartialRollouts,
  Rewards,
  RolloutPieces,
  Rollouts,
} from "./plugins/_music/artifacts.ts";
export type { Denoiser } from "./plugins/_tf/denoiser.ts";
export type {
  RewardContext,
  RewardTerm,
  TokenCorpus,
  Tokenizer,
} from "./plugins/_music/components.ts";
export type {
  AdamWState,
  ForwardOptions,
  ModelCheckpoint,
  ModelConfig,
  ModelSpec,
  ModelState,
  SequenceModel,
  StepResult,
  TensorData,
} from "./plugins/_tf/model.ts";
