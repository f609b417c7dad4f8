/**
 * Codec of the `critic` artifact: `index.json` (config, tokenizer spec, step,
 * metrics, tensor names and shapes) and `weights.bin` (float32,
 * little-endian: weights, then AdamW moments). Loading rebuilds the critic's
 * tokenizer from its spec through the codec context.
 *
 * @module
 */

import type { ArtifactCodec, BinaryFormat } from "../../mod.ts";
import type { Tokenizer } from "../_music/components.ts";
import { readIndex, writeBlocks } from "../../mod.ts";
import {
  packTensors,
  readWeightsBlock,
  type TensorEntry,
  unpackTensors,
} from "../_tf/checkpoint.ts";
import { criticParamShapes } from "./_critic.ts";
import type { Critic, CriticConfig } from "../_music/artifacts.ts";

const FORMAT: BinaryFormat = {
  format: "harmonyrl/critic",
  version: 1,
  // The name critics were written under before every format was "harmonyrl/<thing>".
  aliases: ["harmonyrl-critic"],
};

interface CriticIndex {
  format: string;
  version: number;
  config: CriticConfig;
  tokenizer: Critic["tokenizerSpec"];
  step: number;
  optimizerStep: number | null;
  metrics: Record<string, number>;
  /** Where each tensor lies in `weights.bin`. */
  tensors: TensorEntry[];
}

/**
 * Codec of the `critic` artifact: `index.json` (config, tokenizer spec, step,
 * metrics, tensor names and shapes) and `weights.bin` (float32, little-endian:
 * weights, then AdamW moments). Loading rebuilds the tokenizer from its spec.
 */
export const criticCodec: ArtifactCodec<Critic> = {
  async save(critic, dir) {
    const { tensors, data } = packTensors(critic.weights, critic.optimizer);
    const index: CriticIndex = {
      format: FORMAT.format,
      version: FORMAT.version,
      config: critic.config,
      tokenizer: critic.tokenizerSpec,
      step: critic.step,
      optimizerStep: critic.optimizer?.step ?? null,
      metrics: critic.metrics,
      tensors,
    };
    await writeBlocks(dir, index, { "weights.bin": data });
  },
  async load(dir, context) {
    const where = `Cannot load critic from "${dir}"`;
    const index = await readIndex<CriticIndex>(dir, FORMAT, where);
    const data = await readWeightsBlock(dir, index.tensors, where);
    const { weights, m, v } = unpackTensors(index.tensors, data, where);
    for (const [name, shape] of criticParamShapes(index.config)) {
      if (weights[name]?.shape.join(",") !== shape.join(",")) {
        throw new Error(`${where}: weight "${name}" is missing or not of shape [${shape}]`);
      }
    }
    if (!context) {
      throw new Error(`${where}: the critic's tokenizer cannot be rebuilt without a codec context`);
    }
    const tokenizer = await context.component<Tokenizer>(
      index.tokenizer,
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
