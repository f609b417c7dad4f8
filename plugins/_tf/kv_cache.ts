/**
 * A Transformer's key/value cache for sampling, kept in buffers that grow by
 * doubling and are written in place, with attention computed by the native
 * kernels (`native.ts`) on the wasm heap. Only on the `wasm` backend with the
 * native kernels loaded ({@link nativeKvCacheAvailable}); elsewhere the model
 * concatenates its cache with tfjs ops.
 *
 * Why: concatenating the cache copies all of it at every token (O(n²) over a
 * piece), and the attention of one query per head ran as two batched products
 * of one row per head (64 BLAS calls each for 16 pieces × 4 heads) and a
 * softmax, per layer and token.
 *
 * A buffer `[batch, heads, capacity, headDim]` holds the rows of positions
 * `0 .. length-1`. {@link appendRow} writes position `length` in place when
 * the buffer holds exactly `length` rows, so a state stepped once (as the
 * sampler does) never copies; stepping an older state again (branching) finds
 * more rows written than it has and copies its own rows first, so a state's
 * rows never change under it.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import { nativeDecodeAttention } from "./native.ts";
import { heapTensor } from "./wasm_heap.ts";

/** Rows written into each buffer's memory (shared by its clones), by data id. */
const written = new WeakMap<object, number>();

/** The first capacity of a buffer, in positions. */
const FIRST_CAPACITY = 64;

/** True when the current backend is wasm and the native kernels are loaded. */
export function nativeKvCacheAvailable(): boolean {
  return tf.getBackend() === "wasm" && nativeDecodeAttention() !== null;
}

/** A new buffer of `capacity` positions with `rows` rows of `from` copied in (0 for none). */
function buffer(
  shape: [number, number, number],
  capacity: number,
  from: tf.Tensor4D | null,
  rows: number,
): tf.Tensor4D {
  const [batch, heads, hd] = shape;
  // Rows from `rows` on are left as the heap had them: nothing reads a row before it is written.
  const out = heapTensor([batch, heads, capacity, hd], [from], (values, src) => {
    if (src === null || rows === 0) return;
    const srcCapacity = from!.shape[2];
    for (let bh = 0; bh < batch * heads; bh++) {
      const at = bh * srcCapacity * hd;
      values.set(src.subarray(at, at + rows * hd), bh * capacity * hd);
    }
  }) as tf.Tensor4D;
  written.set(out.dataId, rows);
  return out;
}

/**
 * An empty cache buffer for `batch` pieces.
 *
 * @param batch pieces
 * @param heads attention heads
 * @param headDim floats per head
 * @returns a buffer `[batch, heads, capacity, headDim]` holding no rows
 */
export function emptyCache(batch: number, heads: number, headDim: number): tf.Tensor4D {
  return buffer([batch, heads, headDim], FIRST_CAPACITY, null, 0);
}

/**
 * The cache with `row` `[batch, heads, 1, headDim]` at `position`, after the rows
 * `0 .. position-1` of `cache`: `cache`'s own memory written in place when it holds
 * exactly `position` rows and has room, else a new buffer (twice the capacity when full).
 *
 * @param cache a buffer from {@link emptyCache} or this function, holding `position` rows
 * @param row the new position's keys or values
 * @param position the new row's position
 * @returns a new tensor (the caller disposes it and `cache` separately)
 */
export function appendRow(cache: tf.Tensor4D, row: tf.Tensor4D, position: number): tf.Tensor4D {
  const [batch, heads, capacity, hd] = cache.shape;
  const rows = written.get(cache.dataId) ?? -1;
  let out: tf.Tensor4D;
  if (rows === position && position < capacity) {
    out = tf.clone(cache); // shares the memory (wasm Identity), which is written below
  } else {
    const grown = position < capacity ? capacity : 2 * capacity;
    out = buffer([batch, heads, hd], grown, cache, position);
  }
  const backend = tf.backend() as unknown as BackendWasm;
  const dst = backend.typedArrayFromHeap(out) as Float32Array;
  const src = backend.typedArrayFromHeap(row) as Float32Array;
  const outCapacity = out.shape[2];
  for (let bh = 0; bh < batch * heads; bh++) {
    dst.set(src.subarray(bh * hd, (bh + 1) * hd), (bh * outCapacity + position) * hd);
  }
  written.set(out.dataId, position + 1);
  return out;
}

/**
 * Attention of one query per head over the first `length` positions of the cache.
 *
 * @param q queries `[batch, heads, 1, headDim]` (already scaled)
 * @param k keys, a buffer from {@link appendRow}
 * @param v values, a buffer from {@link appendRow}
 * @param length positions to attend to
 * @returns `[batch, heads, 1, headDim]`
 */
export function decodeAttention(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  length: number,
): tf.Tensor4D {
  const attend = nativeDecodeAttention();
  if (attend === null) {
    throw new Error("Cannot run the cached attention: native kernels not loaded");
  }
  const [batch, heads, capacity, hd] = k.shape;
  return heapTensor(
    [batch, heads, 1, hd],
    [q, k, v],
    (y, qs, ks, vs) => attend(batch * heads, length, capacity, hd, qs!, ks!, vs!, y),
  ) as tf.Tensor4D;
}
