/**
 * Helpers of the backend and kernel tests: deterministic inputs, running a
 * computation on a named backend, and comparing results within a tolerance.
 *
 * @module
 */

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../backend.ts";

export type Engine = "cpu" | "wasm" | "wasm-openblas";

/** Runs `f` on a backend and returns its outputs as plain arrays, checking for leaks. */
export async function runOn(engine: Engine, f: () => tf.Tensor | tf.Tensor[]): Promise<number[][]> {
  await initBackend(engine);
  const before = tf.memory().numTensors;
  const out = tf.tidy(f);
  const outs = Array.isArray(out) ? out : [out];
  const values = await Promise.all(outs.map(async (t) => Array.from(await t.data())));
  tf.dispose(outs);
  assert.equal(tf.memory().numTensors, before, `tensors leaked on ${engine}`);
  return values;
}

/** Asserts that each value is within `tol` of the expected one (relative past magnitude 1). */
export function assertClose(actual: number[], expected: number[], tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const diff = Math.abs(actual[i] - expected[i]);
    assert.ok(
      diff <= tol * Math.max(1, Math.abs(expected[i])),
      `${what}[${i}]: ${actual[i]} vs ${expected[i]}`,
    );
  }
}

/** Deterministic values in [-scale, scale) from a linear congruential generator. */
export function lcg(n: number, seed: number, scale = 1): number[] {
  const out: number[] = [];
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.push((s / 2 ** 31 - 1) * scale);
  }
  return out;
}

/** The largest absolute difference between two tensors of the same shape. */
export function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}
