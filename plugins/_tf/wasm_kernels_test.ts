import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "./backend.ts";
import { registerWasmKernels, WASM_EXTRA_KERNELS } from "./wasm_kernels.ts";
import { assertClose, lcg, runOn } from "./testdata/numeric.ts";

Deno.test("registerWasmKernels() registers the missing kernels once", async () => {
  await initBackend("wasm");
  registerWasmKernels();
  for (const name of WASM_EXTRA_KERNELS) assert.ok(tf.getKernel(name, "wasm"), name);
  assert.deepEqual(registerWasmKernels(), []);
});

Deno.test("UnsortedSegmentSum on wasm sums rows by segment and drops out-of-range ids", async () => {
  const x = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]]; // [5, 2]
  const ids = [2, 0, 2, -1, 3]; // -1 and 3 (= numSegments) are dropped
  // Segment 0: row 1; segment 1: nothing; segment 2: rows 0 and 2.
  const expected = [3, 4, 0, 0, 6, 8];
  for (const dtype of ["float32", "int32"] as const) {
    const f = () =>
      tf.unsortedSegmentSum(tf.tensor2d(x, [5, 2], dtype), tf.tensor1d(ids, "int32"), 3);
    const [wasm] = await runOn("wasm", f);
    const [cpu] = await runOn("cpu", f);
    assert.deepEqual(wasm, expected, dtype);
    assert.deepEqual(cpu, expected, dtype);
  }
});

Deno.test("gradient of an embedding lookup on wasm equals cpu and the hand sum", async () => {
  const vocab = 7;
  const dim = 3;
  const table = lcg(vocab * dim, 1);
  const ids = [[1, 3, 1], [6, 0, 1]]; // [batch 2, time 3]
  const weights = lcg(2 * 3 * dim, 2); // [2, 3, dim]
  const f = () => {
    const grad = tf.grad((emb: tf.Tensor) =>
      tf.sum(
        tf.mul(
          tf.gather(emb, tf.tensor2d(ids, [2, 3], "int32")),
          tf.tensor3d(weights, [2, 3, dim]),
        ),
      )
    );
    return grad(tf.tensor2d(table, [vocab, dim])); // [vocab, dim]
  };
  // d loss / d emb[v] = sum of weights[b, t] over the positions where ids[b][t] == v.
  const expected = new Array<number>(vocab * dim).fill(0);
  ids.flat().forEach((v, pos) => {
    for (let d = 0; d < dim; d++) expected[v * dim + d] += weights[pos * dim + d];
  });
  const [wasm] = await runOn("wasm", f);
  const [cpu] = await runOn("cpu", f);
  assertClose(wasm, expected, 1e-6, "wasm");
  assertClose(cpu, expected, 1e-6, "cpu");
});

Deno.test("Conv2DBackpropFilter on wasm (conv1d and conv2d filter gradients) equals cpu", async () => {
  const cases: Array<() => tf.Tensor> = [
    () =>
      tf.grad((f: tf.Tensor) =>
        tf.sum(
          tf.square(
            tf.conv1d(tf.tensor3d(lcg(2 * 9 * 3, 3), [2, 9, 3]), f as tf.Tensor3D, 2, "same"),
          ),
        )
      )(tf.tensor3d(lcg(3 * 3 * 4, 4), [3, 3, 4])),
    () =>
      tf.grad((f: tf.Tensor) =>
        tf.sum(
          tf.square(
            tf.conv2d(
              tf.tensor4d(lcg(1 * 6 * 5 * 2, 5), [1, 6, 5, 2]),
              f as tf.Tensor4D,
              1,
              "valid",
            ),
          ),
        )
      )(tf.tensor4d(lcg(3 * 2 * 2 * 3, 6), [3, 2, 2, 3])),
  ];
  for (const [i, f] of cases.entries()) {
    const [wasm] = await runOn("wasm", f);
    const [cpu] = await runOn("cpu", f);
    assertClose(wasm, cpu, 1e-5, `case ${i}`);
  }
});

Deno.test("the wasm SplitV replacement equals cpu on every axis, even and uneven splits", async () => {
  const x = () => tf.tensor3d(Array.from({ length: 2 * 6 * 4 }, (_, i) => i * 0.5 - 7), [2, 6, 4]);
  const cases: [number | number[], number][] = [[3, 1], [[1, 2, 3], 1], [2, 0], [[3, 1], -1], [
    4,
    2,
  ]];
  for (const [splits, axis] of cases) {
    const cpu = await runOn("cpu", () => tf.split(x(), splits, axis));
    const wasm = await runOn("wasm", () => tf.split(x(), splits, axis));
    assert.equal(wasm.length, cpu.length);
    cpu.forEach((values, k) =>
      assert.deepEqual(wasm[k], values, `split ${splits} axis ${axis} part ${k}`)
    );
  }
  // Its gradient (a concat) flows through as before.
  const grad = (backend: "cpu" | "wasm") =>
    runOn(backend, () =>
      tf.grad((t: tf.Tensor) => {
        const [a, b] = tf.split(t, [1, 3], 1);
        return tf.add(tf.sum(tf.mul(a, 2)), tf.sum(tf.square(b)));
      })(tf.tensor2d([[1, 2, 3, 4], [5, 6, 7, 8]])));
  assert.deepEqual(await grad("wasm"), await grad("cpu"));
});

Deno.test("the wasm Slice replacement equals cpu for contiguous, strided, int32, empty and rank-5 slices", async () => {
  const x = (shape: number[], dtype: "float32" | "int32" = "float32") =>
    tf.tensor(
      Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => i - 11),
      shape,
      dtype,
    );
  const cases: [number[], number[], number[], ("float32" | "int32")?][] = [
    [[8, 5], [2, 0], [3, -1]], // contiguous rows
    [[8, 5], [1, 2], [4, 2]], // a block
    [[3, 4, 5], [1, 1, 1], [2, 2, 3], "int32"],
    [[2, 3, 4, 5], [0, 1, 2, 0], [2, 2, 1, 5]],
    [[2, 2, 3, 2, 3], [1, 0, 1, 1, 0], [1, 2, 2, 1, 2]],
    [[6], [2], [3]],
    [[4, 4], [1, 1], [0, 3]], // empty
  ];
  for (const [shape, begin, size, dtype] of cases) {
    const cpu = await runOn("cpu", () => tf.slice(x(shape, dtype), begin, size));
    const wasm = await runOn("wasm", () => tf.slice(x(shape, dtype), begin, size));
    assert.deepEqual(wasm, cpu, `slice of ${shape} at ${begin} size ${size}`);
  }
});

Deno.test("the wasm GatherV2 replacement equals cpu on axis 0 (also int32, 2-D indices, negative axis) and falls back on other axes", async () => {
  const table = (dtype: "float32" | "int32") =>
    tf.tensor(Array.from({ length: 5 * 3 * 2 }, (_, i) => i * 3 - 7), [5, 3, 2], dtype);
  const cases: [number[] | number[][], number, ("float32" | "int32")][] = [
    [[4, 0, 4, 2], 0, "float32"],
    [[[1, 3], [0, 0], [4, 2]], 0, "int32"], // 2-D indices: [3, 2, 3, 2]
    [[3, 1], -3, "float32"], // axis -3 is axis 0
    [[2, 0, 1], 1, "float32"], // axis 1: the stock kernel
    [[], 0, "float32"], // no indices
  ];
  for (const [ids, axis, dtype] of cases) {
    const f = () => tf.gather(table(dtype), tf.tensor(ids, undefined, "int32"), axis);
    const cpu = await runOn("cpu", f);
    const wasm = await runOn("wasm", f);
    assert.deepEqual(wasm, cpu, `gather ${JSON.stringify(ids)} on axis ${axis} (${dtype})`);
  }
  await initBackend("wasm");
  const before = tf.memory().numTensors;
  assert.throws(
    () => tf.tidy(() => tf.gather(table("float32"), tf.tensor1d([1, 5], "int32"))),
    /Cannot gather: index 5 \(at 1\) is not in \[0, 4\]/,
  );
  assert.equal(tf.memory().numTensors, before, "nothing leaks from the failed gather");
});

Deno.test("the wasm Identity replacement shares memory safely: a clone outlives its source, and variables still update", async () => {
  await initBackend("wasm");
  const before = tf.memory().numTensors;
  const x = tf.tensor2d([[1, 2], [3, 4]]);
  const y = tf.clone(x);
  x.dispose();
  assert.deepEqual(Array.from(await y.data()), [1, 2, 3, 4]);
  const v = tf.variable(y);
  const doubled = tf.mul(v, 2) as tf.Tensor2D;
  v.assign(doubled);
  assert.deepEqual(Array.from(await v.data()), [2, 4, 6, 8]);
  assert.deepEqual(Array.from(await y.data()), [1, 2, 3, 4], "the clone changed with the variable");
  tf.dispose([y, v, doubled]);
  assert.equal(tf.memory().numTensors, before);
});
