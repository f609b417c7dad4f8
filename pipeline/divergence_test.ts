import assert from "node:assert/strict";
import { divergenceHint, DivergenceWatch, isDivergence, isLossMetric } from "./divergence.ts";
import { DivergenceError } from "./plugin.ts";

Deno.test("isLossMetric() watches loss and loss/... only", () => {
  assert.deepEqual(
    ["loss", "loss/train", "lossy", "nll/validation", "reward/total"].map(isLossMetric),
    [true, true, false, false, false],
  );
});

Deno.test("divergenceHint() names a learning rate when the stage has one", () => {
  assert.match(
    divergenceHint({ lr: 3, epochs: 2 }),
    /^likely cause: a learning rate too high \("lr" is 3\): lower it;/,
  );
  assert.match(divergenceHint({ learningRate: 0.5 }), /"learningRate" is 0\.5/);
  assert.equal(
    divergenceHint({ epochs: 2 }),
    "likely cause: a learning rate too high, or inputs that are not finite; nothing of this stage was cached",
  );
});

Deno.test("DivergenceWatch counts steps, not calls, and a finite loss resets the count", () => {
  const watch = new DivergenceWatch();
  const at = { episodes: false, hint: "hint" };
  watch.record("a", 1, { "loss/x": NaN }, at);
  watch.record("a", 1, { "loss/y": Infinity }, at); // same step: still one step
  watch.record("a", 2, { "loss/x": NaN }, at);
  watch.record("a", 3, { "loss/x": 1 }, at); // recovered
  watch.record("a", 4, { "loss/x": NaN }, at);
  watch.record("b", 4, { "loss/x": NaN }, at); // another stage has its own count
  watch.record("a", 5, { other: 2 }, at); // no loss: neither counts nor resets
  watch.record("a", 6, { "loss/x": NaN }, at);
  assert.throws(
    () => watch.record("a", 7, { "loss/x": NaN }, at),
    (error: unknown) =>
      error instanceof DivergenceError && error.step === 4 &&
      error.message ===
        'training diverged at step 4: "loss/x" was NaN for 3 recorded steps in a row (step 4 to step 7); hint',
  );
  assert.ok(isDivergence(new Error("wrapped", { cause: new DivergenceError("x") })));
  assert.ok(!isDivergence(new Error("other")));
});
