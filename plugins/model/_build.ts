/**
 * Rebuilds models from their configs and checkpoints. This lives beside the
 * architectures, not in `plugins/_tf/model.ts`, so that the shared model code
 * does not import the plugins that import it.
 *
 * @module
 */

import {
  assignWeights,
  type ModelCheckpoint,
  type ModelConfig,
  type ModelSpec,
  type ModelType,
  type SequenceModel,
} from "../_tf/model.ts";

const BUILDERS: Record<ModelType, () => Promise<{ default: { create(p: never): unknown } }>> = {
  lstm: () => import("./lstm.ts"),
  transformer: () => import("./transformer.ts"),
};

/**
 * Builds a model from its config (fresh weights).
 *
 * @throws Error when `config.type` is not a known architecture
 */
export async function buildModel(
  config: ModelConfig,
  vocabSize: number,
  seed = 0,
): Promise<SequenceModel> {
  const load = BUILDERS[config.type];
  if (load === undefined) {
    throw new Error(
      `Cannot build model: unknown type "${config.type}", expected one of ${
        Object.keys(BUILDERS).map((k) => `"${k}"`).join(", ")
      }`,
    );
  }
  const plugin = (await load()).default as { create(p: unknown): ModelSpec };
  return plugin.create(config).build(vocabSize, seed);
}

/**
 * Rebuilds the model a checkpoint describes and loads its weights.
 *
 * @throws Error when the architecture is unknown or the weights do not fit it
 */
export async function loadModelFromCheckpoint(ckpt: ModelCheckpoint): Promise<SequenceModel> {
  const model = await buildModel(ckpt.spec.config, ckpt.vocabSize, 0);
  try {
    assignWeights(model, ckpt.weights);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}
