/**
 * `load/model`: a model checkpoint from disk, for graphs that sample from or
 * fine-tune a model trained in another run. The directory is what the runner
 * stores for a `model` output (`runs/.cache/<key>/outputs/model/`: `index.json`
 * and `weights.bin`); copy it anywhere and point `path` at it.
 *
 * @module
 */

import { definePlugin, fingerprintFiles, p } from "../../mod.ts";
import { modelCodec } from "../_tf/checkpoint.ts";
import { checkArtifactDir, loadStoredArtifact } from "./_artifact.ts";

export default definePlugin({
  name: "load/model",
  kind: "load",
  version: "1.0.0",
  description:
    "Loads a model checkpoint directory (index.json + weights.bin) saved by an earlier run",
  params: {
    path: p.string({
      path: "read",
      description: "Checkpoint directory, e.g. a copy of runs/.cache/<key>/outputs/model",
    }),
  },
  inputs: {},
  outputs: { model: { type: "model", description: "The checkpoint", codec: modelCodec } },
  async preflight(params) {
    const message = await checkArtifactDir(params.path, "model checkpoint");
    return message === undefined ? undefined : { param: "path", message };
  },
  // The cache key covers every file of the checkpoint directory (size and modification time).
  fingerprint: (params) => fingerprintFiles(params.path),
  async run(ctx, _inputs, params) {
    return { model: await loadStoredArtifact(ctx, params.path, modelCodec, "model checkpoint") };
  },
});
