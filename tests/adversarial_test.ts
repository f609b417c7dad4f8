// configs/adversarial.yaml end to end, shrunk by --set overrides: a critic is trained before the
// RL loop, refreshed inside it every episode (continuing from the carried critic), and its
// probability that a sample is real is the reward. Checks the wiring, the metrics and the cache.
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadGraph } from "../pipeline/graph.ts";
import { runPipeline } from "../pipeline/run.ts";
import { registry } from "../plugins/registry.ts";
import { criticCodec } from "../plugins/reward/_critic_codec.ts";
import { testContext } from "../plugins/_testing.ts";

const config = new URL("../configs/adversarial.yaml", import.meta.url).pathname;
const loop = "stages.finetune.loop";

const SMALL = [
  "backend=cpu",
  "stages.load.with.count=16",
  "stages.load.with.bars=4",
  "stages.pretrain.with.epochs=1",
  "stages.pretrain.with.stepsPerEpoch=3",
  "stages.pretrain.with.seqLen=32",
  "stages.pretrain.with.batchSize=4",
  "stages.pretrain.with.validationBatches=1",
  "stages.pretrain.with.warmupSteps=1",
  "stages.seedRollouts.with.count=4",
  "stages.seedRollouts.with.length=40",
  "stages.critic.with.steps=4",
  "stages.critic.with.batchSize=8",
  "stages.critic.with.maxTokens=64",
  `${loop}.episodes=3`,
  `${loop}.checkpointEvery=2`,
  `${loop}.stages.rollout.with.count=4`,
  `${loop}.stages.rollout.with.length=40`,
  `${loop}.stages.discriminate.with.steps=2`,
  `${loop}.stages.discriminate.with.batchSize=8`,
  `${loop}.stages.discriminate.with.maxTokens=64`,
];

Deno.test("the adversarial graph trains a critic, refreshes it every episode and rewards with it", async () => {
  const runsDir = await Deno.makeTempDir({ prefix: "harmonyrl-adversarial-" });
  const graph = await loadGraph(config, { registry, overrides: SMALL });
  const result = await runPipeline(graph, { runsDir, quiet: true, until: "finetune" });
  assert.equal(result.status, "ok", result.error?.message);
  for (const name of ["load", "tokenize", "pretrain", "seedRollouts", "critic", "finetune"]) {
    assert.equal(result.stages[name].status, "done", name);
  }
  const metrics = JSON.parse(await Deno.readTextFile(join(result.runDir!, "metrics.json")));
  // Before the loop: 4 steps, logged at the last one.
  assert.deepEqual(metrics.critic.map((m: { step: number }) => m.step), [4]);
  // In the loop: one record per episode from the critic and from the reward.
  for (const label of ["finetune/discriminate", "finetune/reward"]) {
    assert.deepEqual(metrics[label].map((m: { step: number }) => m.step), [0, 1, 2], label);
  }
  for (const { values } of metrics["finetune/discriminate"]) {
    assert.ok(values["critic/accuracy"] >= 0 && values["critic/accuracy"] <= 1);
    assert.ok(values["critic/realScore"] > 0 && values["critic/fakeScore"] < 1);
  }
  for (const { values } of metrics["finetune/reward"]) {
    assert.ok(values["reward/discriminator"] > 0 && values["reward/discriminator"] < 1);
  }

  // The carried critic went on from the critic stage: 4 steps, then 2 per episode.
  const critic = await criticCodec.load(
    join(runsDir, ".cache", result.stages.finetune.key!, "outputs", "critic"),
    testContext(),
  );
  assert.equal(critic.step, 4 + 3 * 2);

  // Cached like any other stage.
  const again = await runPipeline(graph, { runsDir, quiet: true, until: "finetune" });
  assert.equal(again.status, "ok", again.error?.message);
  assert.equal(again.stages.critic.status, "cached");
  assert.equal(again.stages.finetune.status, "cached");
});
