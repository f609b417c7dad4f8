/**
 * The built-in plugins: an explicit, sorted map of lazy imports (no
 * filesystem scan), so listing names costs nothing and a plugin's module
 * loads only when a graph uses it.
 *
 * @module
 */

import type { Plugin, Registry } from "../mod.ts";

/** Each built-in plugin's module, relative to this file. */
const modules: Record<string, string> = {
  "backend/tfjs": "./backend/tfjs.ts",
  "diffuse/pianoroll": "./diffuse/pianoroll.ts",
  "diffuse/train": "./diffuse/train.ts",
  "eval/metrics": "./eval/metrics.ts",
  "eval/policies": "./eval/policies.ts",
  "eval/score": "./eval/score.ts",
  "export/midi": "./export/midi.ts",
  "load/denoiser": "./load/denoiser.ts",
  "load/maestro": "./load/maestro.ts",
  "load/midi-dir": "./load/midi_dir.ts",
  "load/model": "./load/model.ts",
  "load/synthetic": "./load/synthetic.ts",
  "model/lstm": "./model/lstm.ts",
  "model/transformer": "./model/transformer.ts",
  "pretrain/supervised": "./pretrain/supervised.ts",
  "report/html": "./report/html.ts",
  "reward/batch-match": "./reward/batch_match.ts",
  "reward/composite": "./reward/composite.ts",
  "reward/corpus-match": "./reward/corpus_match.ts",
  "reward/discriminator": "./reward/discriminator.ts",
  "reward/harmony": "./reward/harmony.ts",
  "reward/novelty": "./reward/novelty.ts",
  "reward/rhythm": "./reward/rhythm.ts",
  "reward/smoothness": "./reward/smoothness.ts",
  "reward/train-critic": "./reward/train_critic.ts",
  "rollout/sample": "./rollout/sample.ts",
  "tokenize/events": "./tokenize/events.ts",
  "tokenizer/performance": "./tokenizer/performance.ts",
  "tokenizer/remi": "./tokenizer/remi.ts",
  "update/ppo": "./update/ppo.ts",
  "update/reinforce": "./update/reinforce.ts",
};

const urlOf = (name: string): string | undefined =>
  Object.hasOwn(modules, name) ? new URL(modules[name], import.meta.url).href : undefined;

/**
 * Every built-in plugin, loaded on demand. A graph without `backend` runs on
 * `backend/tfjs` with `name: auto`, and `backend: wasm` means that plugin with
 * `name: wasm`.
 */
export const registry: Registry = {
  names: () => Object.keys(modules).sort(),
  async load(name) {
    const url = urlOf(name);
    return url ? (await import(url) as { default: Plugin }).default : undefined;
  },
  url: urlOf,
  backend: (shorthand) => ({ use: "backend/tfjs", with: { name: shorthand ?? "auto" } }),
  // report/html's audio looks for a SoundFont while the graph is planned; backend/tfjs finds
  // the native kernels' cache folder from the home or cache folder.
  planEnv: ["HARMONYRL_SOUNDFONT", "HOME", "XDG_CACHE_HOME"],
};
