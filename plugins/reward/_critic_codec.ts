/**
 * Codec of the `critic` artifact: `index.json` (config, tokenizer spec, step,
 * metrics, tensor names and shapes) and `weights.bin` (float32,
 * little-endian: weights, then AdamW moments). Loading rebuilds the critic's
 * tokenizer from its spec through the codec context.
 *
 * @module
 */

import type { ArtifactCodec } from "../../mod.ts";
import type { Tokenizer } from "../_music/components.ts";
import { asBytes, assertLittleEndian, readIndex, readSized } from "../../mod.ts";
import type { TensorData } from "../_tf/model.ts";
import { packTensors } from "../_tf/checkpoint.ts";
import { type Critic, type CriticConfig, criticParamShapes } from "./_critic.ts";

const FORMAT = "harmonyrl-critic";
const VERSION = 1;
const OPT_M = "optimizer/m/";
const OPT_V = "optimizer/v/";

interface CriticIndex {
  format: typeof FORMAT;
  version: typeof VERSION;
  config: CriticConfig;
  tokenizer: Critic["tokenizerSpec"];
  step: number;
  optimizerStep: number | null;
  metrics: Record<string, number>;
  /** Offsets and lengths count float32 values of `weights.bin`. */
  tensors: { name: string; shape: number[]; offset: number; length: number }[];
}

/**
 * Codec of the `critic` artifact: `index.json` (config, tokenizer spec, step,
 * metrics, tensor names and shapes) and `weights.bin` (float32, little-endian:
 * weights, then AdamW moments). Loading rebuilds the tokenizer from its spec.
 */
export const criticCodec: ArtifactCodec<Critic> = {
  async save(critic, dir) {
    assertLittleEndian("critic");
    const { tensors, data } = packTensors(critic.weights, critic.optimizer);
    const index: CriticIndex = {
      format: FORMAT,
      version: VERSION,
      config: critic.config,
      tokenizer: critic.tokenizerSpec,
      step: critic.step,
      optimizerStep: critic.optimizer?.step ?? null,
      metrics: critic.metrics,
      tensors,
    };
    await Deno.writeFile(`${dir}/weights.bin`, asBytes(data));
    await Deno.writeTextFile(`${dir}/index.json`, JSON.stringify(index));
  },
  async load(dir, context) {
    assertLittleEndian("critic");
    const where = `Cannot load critic from "${dir}"`;
    const index = await readIndex<CriticIndex>(dir, { format: FORMAT, version: VERSION }, where);
    const total = index.tensors.reduce((n, t) => n + t.length, 0);
    const bytes = await readSized(
      dir,
      { name: "weights.bin", bytesPerItem: 4, items: total },
      where,
    );
    const data = new Float32Array(bytes.buffer, bytes.byteOffset, total);
    const weights: Record<string, TensorData> = {};
    const m: Record<string, TensorData> = {};
    const v: Record<string, TensorData> = {};
    for (const t of index.tensors) {
      if (t.shape.reduce((a, b) => a * b, 1) !== t.length || t.offset + t.length > total) {
        throw new Error(
          `${where}: tensor "${t.name}" does not match its shape or runs past the data`,
        );
      }
      const td = { shape: t.shape, data: data.slice(t.offset, t.offset + t.length) };
      if (t.name.startsWith(OPT_M)) m[t.name.slice(OPT_M.length)] = td;
      else if (t.name.startsWith(OPT_V)) v[t.name.slice(OPT_V.length)] = td;
      else weights[t.name] = td;
    }
    for (const [name, shape] of criticParamShapes(index.config)) {
      if (weights[name]?.shape.join(",") !== shape.join(",")) {
        throw new Error(`${where}: weight "${name}" is missing or not of shape [${shape}]`);
      }
    }
    if (!context) {
      throw new Error(`${where}: the critic's tokenizer cannot be rebuilt without a codec context`);
    }
    const tokenizer = await context.component<Tokenizer>(
      index.tokenizer as Critic["tokenizerSpec"],
      "tokenizer",
    );
    return {
      config: index.config,
      tokenizerSpec: index.tokenizer,
      tokenizer,
      step: index.step,
      weights,
      optimizer: index.optimizerStep === null ? undefined : { step: index.optimizerStep, m, v },
      metrics: index.metrics ?? {},
    };
  },
};
