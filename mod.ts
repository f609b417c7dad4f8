/**
 * HarmonyRL's public contract for plugin authors: declare a plugin with
 * `definePlugin`, describe its params with `p`, and run graphs with
 * `runPipeline`.
 *
 * @module
 */

export {
  definePlugin,
  DivergenceError,
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
export type { Note, Piece } from "./plugins/_music/types.ts";
export type {
  RewardContext,
  RewardTerm,
  TokenCorpus,
  Tokenizer,
} from "./plugins/_music/components.ts";
export type {
  ForwardOptions,
  ModelCheckpoint,
  ModelConfig,
  ModelSpec,
  ModelState,
  SequenceModel,
  StepResult,
} from "./plugins/_tf/model.ts";
