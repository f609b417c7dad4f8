/**
 * The built-in plugins: an explicit, sorted map of lazy imports (no
 * filesystem scan), so listing names costs nothing and a plugin's module
 * loads only when a graph uses it.
 *
 * @module
 */

import type { Registry } from "../pipeline/graph.ts";
import type { Plugin } from "../pipeline/plugin.ts";

const loaders: Record<string, () => Promise<{ default: Plugin }>> = {
  "backend/tfjs": () => import("./backend/tfjs.ts"),
  "diffuse/pianoroll": () => import("./diffuse/pianoroll.ts"),
  "diffuse/train": () => import("./diffuse/train.ts"),
  "eval/metrics": () => import("./eval/metrics.ts"),
  "eval/policies": () => import("./eval/policies.ts"),
  "eval/score": () => import("./eval/score.ts"),
  "export/midi": () => import("./export/midi.ts"),
  "load/denoiser": () => import("./load/denoiser.ts"),
  "load/maestro": () => import("./load/maestro.ts"),
  "load/midi-dir": () => import("./load/midi_dir.ts"),
  "load/model": () => import("./load/model.ts"),
  "load/synthetic": () => import("./load/synthetic.ts"),
  "model/lstm": () => import("./model/lstm.ts"),
  "model/transformer": () => import("./model/transformer.ts"),
  "pretrain/supervised": () => import("./pretrain/supervised.ts"),
  "report/html": () => import("./report/html.ts"),
  "reward/batch-match": () => import("./reward/batch_match.ts"),
  "reward/composite": () => import("./reward/composite.ts"),
  "reward/corpus-match": () => import("./reward/corpus_match.ts"),
  "reward/discriminator": () => import("./reward/discriminator.ts"),
  "reward/harmony": () => import("./reward/harmony.ts"),
  "reward/novelty": () => import("./reward/novelty.ts"),
  "reward/rhythm": () => import("./reward/rhythm.ts"),
  "reward/smoothness": () => import("./reward/smoothness.ts"),
  "reward/train-critic": () => import("./reward/train_critic.ts"),
  "rollout/sample": () => import("./rollout/sample.ts"),
  "tokenize/events": () => import("./tokenize/events.ts"),
  "tokenizer/performance": () => import("./tokenizer/performance.ts"),
  "tokenizer/remi": () => import("./tokenizer/remi.ts"),
  "update/ppo": () => import("./update/ppo.ts"),
  "update/reinforce": () => import("./update/reinforce.ts"),
};

/** Every built-in plugin, loaded on demand. */
export const registry: Registry = {
  names: () => Object.keys(loaders).sort(),
  async load(name) {
    const loader = loaders[name];
    return loader ? (await loader()).default : undefined;
  },
};
