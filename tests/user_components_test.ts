// A user's model plugin (a GRU) and a user's tokenizer plugin, each a .ts file outside plugins/,
// go through every stage that rebuilds a component from a recorded spec: pretraining (killed
// with SIGKILL and resumed), the checkpoint, load/model, sampling, RL fine-tuning with a frozen
// reference, tokenize workers and MIDI export. No file of the project knows them.
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadGraph } from "../pipeline/graph.ts";
import { runPipeline } from "../pipeline/run.ts";
import { registry } from "../plugins/registry.ts";
import { modelCodec } from "../plugins/_tf/checkpoint.ts";
import { tokenCorpusCodec } from "../plugins/_music/token_corpus.ts";
import { rolloutsCodec } from "../plugins/rollout/_codec.ts";

const root = new URL("..", import.meta.url).pathname;
const GRU = join(root, "tests", "fixtures", "gru.ts");
const PITCH_TOKENIZER = join(root, "tests", "fixtures", "pitch_tokenizer.ts");

const gruGraph = (extra = "") => `
name: user-gru
seed: 3
backend: cpu
stages:
  load: { use: load/synthetic, with: { count: 12, bars: 4 } }
  tokenize:
    use: tokenize/events
    in: { corpus: load.corpus }
    with: { workers: 1 }
  pretrain:
    use: pretrain/supervised
    in: { tokens: tokenize.tokens }
    with:
      model: { use: ${GRU}, with: { embedDim: 8, hiddenDim: 12 } }
      seqLen: 8
      batchSize: 2
      epochs: 2
      stepsPerEpoch: 20
      warmupSteps: 4
      validationBatches: 2
      checkpointEvery: 3
  finetune:
    loop:
      episodes: 2
      checkpointEvery: 1
      carry:
        policy: { init: pretrain.model, next: update.model }
      stages:
        rollout:
          use: rollout/sample
          in: { model: finetune.policy }
          with: { count: 4, length: 24 }
        reward:
          use: reward/composite
          in: { rollouts: rollout.rollouts, corpus: load.corpus }
          with: { terms: [{ use: reward/harmony, weight: 1 }] }
        update:
          use: update/reinforce
          in:
            model: finetune.policy
            reference: pretrain.model
            rollouts: rollout.rollouts
            rewards: reward.rewards
          with: { lr: 1.0e-3, klCoef: 0.05 }
${extra}`;

/** The path of the first `last.ckpt` under `<runsDir>/.cache/work/`, or null. */
function findCheckpoint(runsDir: string): string | null {
  const work = join(runsDir, ".cache", "work");
  try {
    for (const entry of Deno.readDirSync(work)) {
      const path = join(work, entry.name, "last.ckpt");
      try {
        Deno.statSync(path);
        return path;
      } catch { /* not yet */ }
    }
  } catch { /* no work directory yet */ }
  return null;
}

async function eventsOf(runDir: string): Promise<Record<string, unknown>[]> {
  return (await Deno.readTextFile(join(runDir, "events.jsonl"))).trim().split("\n")
    .map((line) => JSON.parse(line));
}

Deno.test("a user's GRU model plugin pretrains, resumes after kill -9, reloads with load/model, samples and fine-tunes with RL", async () => {
  const dir = await Deno.makeTempDir({ prefix: "harmonyrl-gru-" });
  const config = join(dir, "gru.yaml");
  await Deno.writeTextFile(config, gruGraph());
  const runsDir = join(dir, "runs");

  // Killed with SIGKILL once pretraining has saved a mid-epoch checkpoint.
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "--config", config, "--runs-dir", runsDir, "--quiet"],
    cwd: root,
    stdout: "null",
    stderr: "null",
  }).spawn();
  let checkpoint: string | null = null;
  const deadline = Date.now() + 120_000;
  while (checkpoint === null && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    checkpoint = findCheckpoint(runsDir);
  }
  child.kill("SIGKILL");
  const status = await child.status;
  assert.ok(checkpoint !== null, "the child wrote no checkpoint within 2 minutes");
  assert.equal(status.signal, "SIGKILL", "the child finished before it was killed");

  // The rerun resumes pretraining, rebuilding the GRU from the checkpoint's component spec.
  const graph = await loadGraph(config, { registry });
  const result = await runPipeline(graph, { runsDir, quiet: true });
  assert.equal(result.status, "ok", result.error?.message);
  const events = await eventsOf(result.runDir!);
  assert.ok(
    events.some((e) => e.type === "log" && /^Resuming from step [1-9]/.test(String(e.message))),
    "pretraining did not resume",
  );
  const model = await modelCodec.load(
    join(runsDir, ".cache", result.stages.pretrain.key!, "outputs", "model"),
  );
  assert.equal(model.spec.type, "gru");
  assert.deepEqual(model.spec.component, { use: GRU, with: { embedDim: 8, hiddenDim: 12 } });

  // RL fine-tuning ran both episodes on the GRU, with a KL to the frozen pretrained GRU.
  const updates = events.filter((e) => e.type === "metric" && e.stage === "finetune/update");
  assert.equal(updates.length, 2);
  for (const e of updates) {
    const values = e.values as Record<string, number>;
    assert.ok(Number.isFinite(values["loss/policy"]) && values["policy/kl"] >= 0, String(values));
  }
  const policy = await modelCodec.load(
    join(runsDir, ".cache", result.stages.finetune.key!, "outputs", "policy"),
  );
  assert.equal(policy.metrics["rl/episodes"], 2);
  assert.deepEqual(policy.spec.component, model.spec.component);
  assert.notDeepEqual(policy.weights["gru/recurrentKernel"], model.weights["gru/recurrentKernel"]);

  // load/model rebuilds it from a copy of the checkpoint in another graph, and samples from it.
  const copy = join(dir, "gru-model");
  await Deno.mkdir(copy);
  const stored = join(runsDir, ".cache", result.stages.finetune.key!, "outputs", "policy");
  for await (const entry of Deno.readDir(stored)) {
    await Deno.copyFile(join(stored, entry.name), join(copy, entry.name));
  }
  const reload = join(dir, "reload.yaml");
  await Deno.writeTextFile(
    reload,
    `name: user-gru-reload
backend: cpu
stages:
  model: { use: load/model, with: { path: ${copy} } }
  rollout:
    use: rollout/sample
    in: { model: model.model }
    with: { count: 3, length: 16 }
`,
  );
  const reloaded = await runPipeline(await loadGraph(reload, { registry }), {
    runsDir: join(dir, "runs2"),
    quiet: true,
  });
  assert.equal(reloaded.status, "ok", reloaded.error?.message);
  const rollouts = await rolloutsCodec.load(
    join(dir, "runs2", ".cache", reloaded.stages.rollout.key!, "outputs", "rollouts"),
  );
  assert.equal(rollouts.pieces.length, 3);
  assert.deepEqual(rollouts.tokens.map((t) => t.length <= 17), [true, true, true]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a user's tokenizer plugin tokenizes in workers, trains a model, samples and exports through its spec", async () => {
  const dir = await Deno.makeTempDir({ prefix: "harmonyrl-tokenizer-" });
  const config = join(dir, "pitch.yaml");
  await Deno.writeTextFile(
    config,
    `name: user-tokenizer
seed: 4
backend: cpu
stages:
  load: { use: load/synthetic, with: { count: 12, bars: 2 } }
  tokenize:
    use: tokenize/events
    in: { corpus: load.corpus }
    with:
      tokenizer: { use: ${PITCH_TOKENIZER}, with: { noteSec: 0.5 } }
      workers: 2
  pretrain:
    use: pretrain/supervised
    in: { tokens: tokenize.tokens }
    with:
      model: { use: model/lstm, with: { embedDim: 8, hiddenDim: 16, layers: 1, dropout: 0 } }
      seqLen: 8
      batchSize: 2
      epochs: 1
      stepsPerEpoch: 5
      warmupSteps: 1
      validationBatches: 1
  rollout:
    use: rollout/sample
    in: { model: pretrain.model }
    with: { count: 3, length: 12 }
  export:
    use: export/midi
    in: { tokens: tokenize.tokens }
    with: { dir: ${join(dir, "midi")} }
`,
  );
  const result = await runPipeline(await loadGraph(config, { registry }), {
    runsDir: join(dir, "runs"),
    quiet: true,
  });
  assert.equal(result.status, "ok", result.error?.message);
  const events = await eventsOf(result.runDir!);
  // Workers rebuilt the user's tokenizer from its module: nothing fell back to one thread.
  assert.ok(
    !events.some((e) => /Tokenizing in one thread/.test(String(e.message ?? ""))),
    "tokenize fell back to one thread",
  );
  const tokens = await tokenCorpusCodec.load(
    join(dir, "runs", ".cache", result.stages.tokenize.key!, "outputs", "tokens"),
  );
  assert.deepEqual(tokens.tokenizer, { use: PITCH_TOKENIZER, with: { noteSec: 0.5 } });
  assert.equal(tokens.vocabSize, 131);
  // Export decoded the tokens with the user's tokenizer: notes half a second apart.
  const files = [...Deno.readDirSync(join(dir, "midi"))].filter((f) => f.name.endsWith(".mid"));
  assert.equal(files.length, 12);
  const { readMidi } = await import("../plugins/_music/midi.ts");
  const piece = readMidi(await Deno.readFile(join(dir, "midi", files[0].name)), { id: "a" });
  assert.ok(piece.notes.length > 0);
  for (const [i, note] of piece.notes.entries()) {
    assert.ok(Math.abs(note.startSec - i * 0.5) < 1e-3, `note ${i} starts at ${note.startSec}`);
  }
  // Sampling decoded with it too, rebuilt from the checkpoint's tokenizer spec.
  const rollouts = await rolloutsCodec.load(
    join(dir, "runs", ".cache", result.stages.rollout.key!, "outputs", "rollouts"),
  );
  assert.equal(rollouts.pieces.length, 3);
  for (const sampled of rollouts.pieces) {
    sampled.notes.forEach((note, i) => assert.equal(note.startSec, i * 0.5));
  }
  await Deno.remove(dir, { recursive: true });
});
