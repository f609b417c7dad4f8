/**
 * Small plugins of the core's own, used by the runner's tests: they do simple
 * arithmetic so that results can be checked exactly, and count their calls so
 * that tests can tell a cached stage from one that ran.
 *
 * @module
 */

import type { Registry } from "../graph.ts";
import { definePlugin, type Plugin } from "../plugin.ts";
import { p } from "../schema.ts";

/** How many times each toy plugin's run() was called, by stage name. */
export const calls = new Map<string, number>();
const count = (stage: string) => calls.set(stage, (calls.get(stage) ?? 0) + 1);

const numbers = definePlugin({
  name: "toy/numbers",
  kind: "load",
  version: "1.0.0",
  description: "Makes the numbers start, start+1, ..., start+count-1",
  params: {
    count: p.integer({ default: 3, min: 1, description: "How many numbers" }),
    start: p.number({ default: 1, description: "First number" }),
  },
  inputs: {},
  outputs: { numbers: { type: "numbers", description: "The numbers" } },
  run(ctx, _inputs, params) {
    count(ctx.stage);
    return Promise.resolve({
      numbers: Array.from({ length: params.count }, (_, i) => params.start + i),
    });
  },
});

const read = definePlugin({
  name: "toy/read",
  kind: "load",
  version: "1.0.0",
  description: "Reads numbers from a JSON file; checks before the run that the file is there",
  params: { path: p.string({ description: "JSON file holding a list of numbers" }) },
  inputs: {},
  outputs: { numbers: { type: "numbers", description: "The numbers read" } },
  async preflight(params) {
    const there = await Deno.stat(params.path).then((info) => info.isFile, () => false);
    return there ? undefined : {
      param: "path",
      message: `Cannot read numbers from "${params.path}": no such file; write one first`,
    };
  },
  async run(ctx, _inputs, params) {
    count(ctx.stage);
    return { numbers: JSON.parse(await Deno.readTextFile(params.path)) };
  },
});

const scale = definePlugin({
  name: "toy/scale",
  kind: "tokenize",
  version: "1.0.0",
  description: "Multiplies every number by a factor",
  params: { factor: p.number({ default: 2, min: 0, description: "The factor" }) },
  inputs: { numbers: { type: "numbers", description: "Numbers to scale" } },
  outputs: { numbers: { type: "numbers", description: "Scaled numbers" } },
  run(ctx, inputs, params) {
    count(ctx.stage);
    return Promise.resolve({ numbers: (inputs.numbers as number[]).map((x) => x * params.factor) });
  },
});

const sum = definePlugin({
  name: "toy/sum",
  kind: "eval",
  version: "1.0.0",
  description: "Adds the numbers, optionally weighted by terms",
  params: {
    terms: p.components({
      kind: "reward",
      default: [],
      description: "Weighted offsets added to the sum",
    }),
  },
  inputs: {
    numbers: { type: "numbers", description: "Numbers to add" },
    extra: { type: "numbers", description: "More numbers to add", optional: true },
  },
  outputs: { total: { type: "number", description: "The sum" } },
  run(ctx, inputs, params) {
    count(ctx.stage);
    const all = [
      ...(inputs.numbers as number[]),
      ...((inputs.extra as number[] | undefined) ?? []),
    ];
    const offsets = params.terms.map((t) => t.weight * (t.component as { offset: number }).offset);
    ctx.metrics(0, { "toy/sum": all.reduce((a, b) => a + b, 0) });
    Deno.mkdirSync(`${ctx.runDir}/sums`, { recursive: true });
    Deno.writeTextFileSync(`${ctx.runDir}/sums/${ctx.stage}.txt`, String(all.length));
    return Promise.resolve({ total: [...all, ...offsets].reduce((a, b) => a + b, 0) });
  },
});

const offset = definePlugin({
  name: "toy/offset",
  kind: "reward",
  version: "1.0.0",
  description: "A component that holds an offset",
  params: { value: p.number({ default: 10, description: "The offset" }) },
  create: (params) => ({ offset: params.value }),
});

const fail = definePlugin({
  name: "toy/fail",
  kind: "eval",
  version: "1.0.0",
  description: "Fails when told to, else passes its input through",
  params: { fail: p.boolean({ default: true, description: "Whether to throw" }) },
  inputs: { numbers: { type: "numbers", description: "Numbers" } },
  outputs: { numbers: { type: "numbers", description: "The same numbers" } },
  run(ctx, inputs, params) {
    count(ctx.stage);
    if (params.fail) throw new Error("the toy failed on purpose");
    return Promise.resolve({ numbers: inputs.numbers });
  },
});

const step = definePlugin({
  name: "toy/step",
  kind: "update",
  version: "1.0.0",
  description: "Adds delta (times the loop iteration + 1 when scaled) to a number",
  params: {
    delta: p.number({ default: 1, description: "Amount added" }),
    abortAt: p.integer({
      default: -1,
      description: "Abort the run's controller at this iteration (tests)",
    }),
  },
  inputs: {
    value: { type: "number", description: "The value" },
    bonus: { type: "number", description: "Added as well", optional: true },
  },
  outputs: { value: { type: "number", description: "value + delta" } },
  run(ctx, inputs, params) {
    count(ctx.stage);
    ctx.metrics(ctx.iteration ?? 0, { "toy/value": inputs.value as number });
    if (params.abortAt === ctx.iteration) abortHook?.();
    // Tests of kill -9: the process dies here, with no chance to clean up.
    if (Deno.env.get("HARMONYRL_TOY_KILL_AT") === String(ctx.iteration)) {
      Deno.kill(Deno.pid, "SIGKILL");
    }
    return Promise.resolve({
      value: (inputs.value as number) + params.delta + ((inputs.bonus as number) ?? 0),
    });
  },
});

const train = definePlugin({
  name: "toy/train",
  kind: "pretrain",
  version: "1.0.0",
  description: "Records a loss per step (NaN from nanFrom to nanUntil) and keeps a checkpoint",
  params: {
    steps: p.integer({ default: 10, min: 1, description: "Steps to record" }),
    lr: p.number({ default: 0.1, min: 0, description: "Shown in the divergence hint" }),
    nanFrom: p.integer({ default: -1, description: "First step whose loss is NaN; -1 = none" }),
    nanUntil: p.integer({ default: 1000, description: "Last step whose loss is NaN" }),
    sleepMs: p.integer({
      default: 0,
      min: 0,
      description: "Pause while each step's checkpoint is half written (concurrency tests)",
    }),
  },
  inputs: { value: { type: "number", description: "Passed through", optional: true } },
  outputs: { value: { type: "number", description: "The input value plus the steps" } },
  async run(ctx, inputs, params) {
    count(ctx.stage);
    for (let i = 0; i < params.steps; i++) {
      const step = ctx.iteration ?? i;
      // A checkpoint written as a temporary file and renamed, like the real stages do.
      await Deno.writeTextFile(`${ctx.workDir}/checkpoint.txt.tmp`, String(step));
      if (params.sleepMs > 0) await new Promise((r) => setTimeout(r, params.sleepMs));
      await Deno.rename(`${ctx.workDir}/checkpoint.txt.tmp`, `${ctx.workDir}/checkpoint.txt`);
      const nan = step >= params.nanFrom && step <= params.nanUntil && params.nanFrom >= 0;
      ctx.metrics(step, { "loss/train": nan ? NaN : 1 / (step + 1), "toy/rate": NaN });
    }
    return { value: ((inputs.value as number) ?? 0) + params.steps };
  },
});

/** Called by toy/step at `abortAt`: tests set it to abort their controller. */
export let abortHook: (() => void) | undefined;
export function setAbortHook(hook: (() => void) | undefined): void {
  abortHook = hook;
}

const plugins: Record<string, Plugin> = {
  "toy/fail": fail,
  "toy/numbers": numbers,
  "toy/offset": offset,
  "toy/read": read,
  "toy/scale": scale,
  "toy/step": step,
  "toy/sum": sum,
  "toy/train": train,
  "backend/tfjs": definePlugin({
    name: "backend/tfjs",
    kind: "backend",
    version: "1.0.0",
    description: 'No tensors in toy graphs; "auto" pretends two faster backends were missing',
    params: { name: p.string({ default: "auto", description: "Backend asked for" }) },
    create: (params) => ({
      init: (log: (message: string) => void) => {
        if (params.name !== "auto") {
          return Promise.resolve({ name: "none", detail: "toy", reason: "named in the config" });
        }
        const skipped = [
          { name: "fast", reason: 'no "libfast.so" in /usr/lib, /opt/lib' },
          { name: "faster", reason: "no device" },
        ];
        for (const s of skipped) log(`skipped "${s.name}": ${s.reason}`);
        return Promise.resolve({
          name: "none",
          detail: "toy",
          reason: '"auto" picked the fastest that starts here',
          skipped,
        });
      },
    }),
  }),
};

/** A registry of the toy plugins. */
export const toyRegistry: Registry = {
  names: () => Object.keys(plugins).sort(),
  load: (name) => Promise.resolve(plugins[name]),
  backend: (shorthand) => ({ use: "backend/tfjs", with: { name: shorthand ?? "auto" } }),
};
