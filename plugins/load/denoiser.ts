/**
 * `load/denoiser`: a trained diffusion denoiser from disk, so `configs/refine.yaml`
 * can refine with a denoiser trained in another run instead of training one.
 * The directory is what the runner stores for a `denoiser` output
 * (`runs/.cache/<key>/outputs/denoiser/`).
 *
 * @module
 */

import { definePlugin, fingerprintFiles, p } from "../../mod.ts";
import { denoiserCodec } from "../_tf/denoiser.ts";
import { checkArtifactDir, loadStoredArtifact } from "./_artifact.ts";

export default definePlugin({
  name: "load/denoiser",
  kind: "load",
  version: "1.0.0",
  description: "Loads a diffusion denoiser checkpoint directory saved by an earlier run",
  params: {
    path: p.string({
      path: "read",
      description: "Checkpoint directory, e.g. a copy of runs/.cache/<key>/outputs/denoiser",
    }),
  },
  inputs: {},
  outputs: { denoiser: { type: "denoiser", description: "The denoiser", codec: denoiserCodec } },
  async preflight(params) {
    const message = await checkArtifactDir(params.path, "denoiser");
    return message === undefined ? undefined : { param: "path", message };
  },
  // The cache key covers every file of the checkpoint directory (size and modification time).
  fingerprint: (params) => fingerprintFiles(params.path),
  async run(ctx, _inputs, params) {
    return { denoiser: await loadStoredArtifact(ctx, params.path, denoiserCodec, "denoiser") };
  },
});
