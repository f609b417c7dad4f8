import assert from "node:assert/strict";
import { defaultParams, testContext } from "../_testing.ts";
import { createRng } from "../../pipeline/rng.ts";
import { initBackend } from "../_tf/backend.ts";
import { checkpointFromModel, modelCodec } from "../_tf/checkpoint.ts";
import { type ModelCheckpoint } from "../_tf/model.ts";
import {
  createDenoiser,
  type Denoiser,
  denoiserCodec,
  denoiserConfig,
  disposeDenoiser,
} from "../_tf/denoiser.ts";
import lstm from "../model/lstm.ts";
import loadModel from "./model.ts";
import loadDenoiser from "./denoiser.ts";

await initBackend("cpu");

Deno.test("load/model reads a stored checkpoint back with the same weights", async () => {
  const spec = lstm.create(defaultParams(lstm, { embedDim: 4, hiddenDim: 8, layers: 1 }) as never);
  const model = spec.build(20, 1);
  const ckpt = await checkpointFromModel(model, {
    tokenizer: { use: "tokenizer/performance", with: {} },
  });
  model.dispose();
  const dir = await Deno.makeTempDir();
  await modelCodec.save(ckpt, dir);
  const out = await loadModel.run(testContext(), {}, { path: dir });
  const loaded = out.model as ModelCheckpoint;
  assert.deepEqual(Object.keys(loaded.weights).sort(), Object.keys(ckpt.weights).sort());
  for (const [name, tensor] of Object.entries(ckpt.weights)) {
    assert.deepEqual(loaded.weights[name].data, tensor.data);
  }
});

Deno.test("load/denoiser reads a stored denoiser back", async () => {
  const config = denoiserConfig({
    channels: 8,
    blocks: 1,
    diffusionSteps: 10,
    bars: 1,
    stepsPerBeat: 4,
  });
  const denoiser = createDenoiser(config, createRng(3));
  const dir = await Deno.makeTempDir();
  await denoiserCodec.save(denoiser, dir);
  const out = await loadDenoiser.run(testContext(), {}, { path: dir });
  const loaded = out.denoiser as Denoiser;
  assert.deepEqual(loaded.config, denoiser.config);
  disposeDenoiser(denoiser);
  disposeDenoiser(loaded);
});

Deno.test("the checkpoint loaders name the path that is missing or broken", async () => {
  await assert.rejects(
    () => loadModel.run(testContext(), {}, { path: "/nonexistent/ckpt" }),
    /Cannot load model checkpoint "\/nonexistent\/ckpt": no such directory/,
  );
  // The same check runs before anything runs, for the --set hint.
  assert.deepEqual(await loadModel.preflight!({ path: "/nonexistent/ckpt" }), {
    param: "path",
    message: 'Cannot load model checkpoint "/nonexistent/ckpt": no such directory',
  });
  const empty = await Deno.makeTempDir();
  assert.equal(await loadDenoiser.preflight!({ path: empty }), undefined);
  await assert.rejects(
    () => loadDenoiser.run(testContext(), {}, { path: empty }),
    new RegExp(`Cannot load denoiser "${empty}": `),
  );
});
