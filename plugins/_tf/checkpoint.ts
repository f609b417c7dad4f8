/**
 * Model checkpoints: a snapshot of a model with its optimizer and RNG state,
 * the component spec that rebuilds it (`ctx.component`), and its two stored
 * forms: the `model` artifact (a folder: `index.json` + `weights.bin`) and a
 * resumable `.ckpt` file (the same index and data in one file).
 *
 * @module
 */

import {
  type ArtifactCodec,
  asBytes,
  type BinaryFormat,
  checkIndex,
  type FullComponentRef,
  readBlock,
  readIndex,
  type StageContext,
  writeBlocks,
  writeFileAtomic,
} from "../../mod.ts";
import {
  assignWeights,
  type ModelCheckpoint,
  type ModelConfig,
  type ModelSpec,
  readWeights,
  type SequenceModel,
  type TensorData,
} from "./model.ts";
import type { AdamW } from "./optim.ts";

/**
 * Snapshot of a model (and optionally its optimizer) as a checkpoint.
 *
 * @param model the model
 * @param extra tokenizer spec, step, optimizer, RNG state and metrics to store with it
 */
export async function checkpointFromModel(
  model: SequenceModel,
  extra: {
    /** The model component's spec (`ModelSpec.component`); derived from the config when absent. */
    component?: FullComponentRef;
    tokenizer: FullComponentRef;
    step?: number;
    optimizer?: AdamW;
    rngState?: number[];
    metrics?: Record<string, number>;
  },
): Promise<ModelCheckpoint> {
  return {
    spec: {
      type: model.config.type,
      config: structuredClone(model.config),
      component: structuredClone(extra.component ?? builtInComponent(model.config)),
    },
    vocabSize: model.vocabSize,
    tokenizer: extra.tokenizer,
    step: extra.step ?? extra.optimizer?.step ?? 0,
    weights: await readWeights(model),
    optimizer: extra.optimizer ? await extra.optimizer.getState() : undefined,
    rngState: extra.rngState,
    metrics: { ...extra.metrics },
  };
}

/**
 * The component spec of a config written before checkpoints recorded one:
 * the built-in `model/<type>` with the config's fields as params.
 */
function builtInComponent(config: ModelConfig): FullComponentRef {
  const { type, ...params } = config;
  return { use: `model/${type}`, with: params };
}

/**
 * The component spec that rebuilds a checkpoint's model.
 *
 * @param ckpt The checkpoint.
 * @returns `{use, with}` for `ctx.component(spec, "model")`.
 */
export function modelComponentOf(ckpt: ModelCheckpoint): FullComponentRef {
  return ckpt.spec.component ?? builtInComponent(ckpt.spec.config);
}

/**
 * Rebuilds the model a checkpoint describes, through its component spec (so a
 * user's model plugin given by path is rebuilt too), and loads its weights.
 *
 * @param ctx Where components come from (a stage's context).
 * @param ckpt The checkpoint.
 * @returns A fresh model with the checkpoint's weights; the caller disposes it.
 * @throws {Error} When the plugin cannot be found, or the weights do not fit it.
 */
export async function modelFromCheckpoint(
  ctx: Pick<StageContext, "component">,
  ckpt: ModelCheckpoint,
): Promise<SequenceModel> {
  const spec = await ctx.component<ModelSpec>(modelComponentOf(ckpt), "model");
  const model = spec.build(ckpt.vocabSize, 0);
  try {
    assignWeights(model, ckpt.weights);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}

/**
 * A read-only model for a checkpoint: the live policy when an update in this
 * process made the checkpoint, else one built once and kept with the
 * checkpoint object. Shared: callers do not dispose it.
 *
 * @param ctx Where components come from.
 * @param ckpt The checkpoint.
 */
export async function liveModelOf(
  ctx: Pick<StageContext, "component">,
  ckpt: ModelCheckpoint,
): Promise<SequenceModel> {
  if (!ckpt.live) ckpt.live = { model: await modelFromCheckpoint(ctx, ckpt) };
  return ckpt.live.model;
}

/** The `model` artifact's format; a `.ckpt` file holds the same index. */
const FORMAT: BinaryFormat = {
  format: "harmonyrl/model",
  version: 1,
  // The name models were written under before every format was "harmonyrl/<thing>".
  aliases: ["harmonyrl-model"],
};

interface CheckpointIndex {
  format: string;
  version: number;
  spec: ModelCheckpoint["spec"];
  vocabSize: number;
  tokenizer: FullComponentRef;
  step: number;
  optimizerStep: number | null;
  rngState: number[] | null;
  metrics: Record<string, number>;
  /** Offsets and lengths count float32 values in the binary part. */
  tensors: { name: string; shape: number[]; offset: number; length: number }[];
}

const OPT_M = "optimizer/m/";
const OPT_V = "optimizer/v/";

/** Where one tensor lies in a weights file (offsets and lengths count float32 values). */
export interface TensorEntry {
  name: string;
  shape: number[];
  offset: number;
  length: number;
}

/**
 * Packs weights and, when given, AdamW moments (named `optimizer/m/<name>`,
 * `optimizer/v/<name>`) into one Float32Array with an index of where each
 * tensor lies: the layout of every weights file (models and critics).
 */
export function packTensors(
  weights: Record<string, TensorData>,
  optimizer?: { m: Record<string, TensorData>; v: Record<string, TensorData> },
): { tensors: TensorEntry[]; data: Float32Array } {
  const entries: [string, TensorData][] = Object.entries(weights);
  if (optimizer) {
    for (const [n, t] of Object.entries(optimizer.m)) entries.push([OPT_M + n, t]);
    for (const [n, t] of Object.entries(optimizer.v)) entries.push([OPT_V + n, t]);
  }
  let total = 0;
  const tensors = entries.map(([name, t]) => {
    const entry = { name, shape: [...t.shape], offset: total, length: t.data.length };
    total += t.data.length;
    return entry;
  });
  const data = new Float32Array(total);
  entries.forEach(([, t], i) => data.set(t.data, tensors[i].offset));
  return { tensors, data };
}

/**
 * The inverse of {@linkcode packTensors}: weights and AdamW moments (empty
 * when the file has none) as copies out of `data`.
 *
 * @param tensors The index's tensor entries.
 * @param data The float32 values.
 * @param where The start of error messages (`Cannot load critic from "dir"`).
 * @throws {Error} `<where>: tensor "<name>" does not match its shape or runs past the data`.
 */
export function unpackTensors(
  tensors: readonly TensorEntry[],
  data: Float32Array,
  where: string,
): {
  weights: Record<string, TensorData>;
  m: Record<string, TensorData>;
  v: Record<string, TensorData>;
} {
  const weights: Record<string, TensorData> = {};
  const m: Record<string, TensorData> = {};
  const v: Record<string, TensorData> = {};
  for (const t of tensors) {
    if (t.shape.reduce((a, b) => a * b, 1) !== t.length || t.offset + t.length > data.length) {
      throw new Error(
        `${where}: tensor "${t.name}" does not match its shape or runs past the data`,
      );
    }
    const td = { shape: t.shape, data: data.slice(t.offset, t.offset + t.length) };
    if (t.name.startsWith(OPT_M)) m[t.name.slice(OPT_M.length)] = td;
    else if (t.name.startsWith(OPT_V)) v[t.name.slice(OPT_V.length)] = td;
    else weights[t.name] = td;
  }
  return { weights, m, v };
}

/**
 * Reads `weights.bin` of a directory artifact whose `index.json` lists its
 * tensors (model, critic, denoiser): exactly the floats the tensors span.
 *
 * @throws {Error} `<where>: "index.json" lacks its "tensors" list`, or as {@linkcode readBlock}.
 */
export async function readWeightsBlock(
  dir: string,
  tensors: readonly TensorEntry[] | undefined,
  where: string,
): Promise<Float32Array> {
  if (!Array.isArray(tensors)) {
    throw new Error(`${where}: "index.json" lacks its "tensors" list`);
  }
  const total = tensors.reduce((n, t) => n + t.length, 0);
  return await readBlock(dir, { name: "weights.bin", type: Float32Array, items: total }, where);
}

function toIndexAndData(ckpt: ModelCheckpoint): { index: CheckpointIndex; data: Float32Array } {
  const { tensors, data } = packTensors(ckpt.weights, ckpt.optimizer);
  const index: CheckpointIndex = {
    format: FORMAT.format,
    version: FORMAT.version,
    spec: ckpt.spec,
    vocabSize: ckpt.vocabSize,
    tokenizer: ckpt.tokenizer,
    step: ckpt.step,
    optimizerStep: ckpt.optimizer?.step ?? null,
    rngState: ckpt.rngState ?? null,
    metrics: ckpt.metrics,
    tensors,
  };
  return { index, data };
}

function fromIndexAndData(
  index: CheckpointIndex,
  data: Float32Array,
  where: string,
): ModelCheckpoint {
  const { weights, m, v } = unpackTensors(index.tensors, data, where);
  return {
    spec: index.spec,
    vocabSize: index.vocabSize,
    tokenizer: index.tokenizer,
    step: index.step,
    weights,
    optimizer: index.optimizerStep === null ? undefined : { step: index.optimizerStep, m, v },
    rngState: index.rngState ?? undefined,
    metrics: index.metrics ?? {},
  };
}

/**
 * Codec of the `model` artifact: `index.json` (config, step, tokenizer spec,
 * tensor names and shapes) plus `weights.bin` (all float32 values, little-endian,
 * weights then optimizer moments).
 */
export const modelCodec: ArtifactCodec<ModelCheckpoint> = {
  async save(ckpt, dir) {
    const { index, data } = toIndexAndData(ckpt);
    await writeBlocks(dir, index, { "weights.bin": data });
  },
  async load(dir) {
    const where = `Cannot load model checkpoint from "${dir}"`;
    const index = await readIndex<CheckpointIndex>(dir, FORMAT, where);
    return fromIndexAndData(index, await readWeightsBlock(dir, index.tensors, where), where);
  },
};

const FILE_MAGIC = new TextEncoder().encode("HRLCKPT1");

/**
 * Writes a checkpoint as one file, atomically: it goes to a temporary file
 * beside `path` that is then renamed over it, so a run killed mid-write
 * leaves the previous checkpoint intact. Layout: `HRLCKPT1`, a uint32 JSON
 * length, the JSON index, zero padding to 4 bytes, the float32 values.
 */
export async function saveCheckpointFile(path: string, ckpt: ModelCheckpoint): Promise<void> {
  const { index, data } = toIndexAndData(ckpt);
  const json = new TextEncoder().encode(JSON.stringify(index));
  const head = FILE_MAGIC.length + 4 + json.length;
  const dataStart = Math.ceil(head / 4) * 4;
  const bytes = new Uint8Array(dataStart + data.byteLength);
  bytes.set(FILE_MAGIC, 0);
  new DataView(bytes.buffer).setUint32(FILE_MAGIC.length, json.length, true);
  bytes.set(json, FILE_MAGIC.length + 4);
  bytes.set(asBytes(data), dataStart);
  await writeFileAtomic(path, bytes);
}

/**
 * Reads a file written by {@link saveCheckpointFile}.
 *
 * @throws Error when the file is not such a checkpoint or is truncated
 */
export async function loadCheckpointFile(path: string): Promise<ModelCheckpoint> {
  const bytes = await Deno.readFile(path);
  const magicOk = bytes.length >= FILE_MAGIC.length + 4 &&
    FILE_MAGIC.every((b, i) => bytes[i] === b);
  if (!magicOk) {
    throw new Error(`Cannot read checkpoint "${path}": not a HarmonyRL checkpoint file`);
  }
  const jsonLength = new DataView(bytes.buffer, bytes.byteOffset).getUint32(
    FILE_MAGIC.length,
    true,
  );
  const head = FILE_MAGIC.length + 4 + jsonLength;
  if (head > bytes.length) {
    throw new Error(`Cannot read checkpoint "${path}": the file is truncated`);
  }
  const where = `Cannot read checkpoint "${path}"`;
  const index = checkIndex<CheckpointIndex>(
    JSON.parse(new TextDecoder().decode(bytes.subarray(FILE_MAGIC.length + 4, head))),
    FORMAT,
    where,
  );
  const dataStart = Math.ceil(head / 4) * 4;
  const data = new Float32Array(
    bytes.buffer.slice(bytes.byteOffset + dataStart, bytes.byteOffset + bytes.length),
  );
  return fromIndexAndData(index, data, where);
}
