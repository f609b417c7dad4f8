/**
 * Kernels that tfjs-backend-wasm 4.22 lacks but training needs, written in
 * TypeScript on the wasm heap.
 *
 * Reference: the tfjs-backend-cpu kernels of the same names
 * (`tfjs-backend-cpu/src/kernels/UnsortedSegmentSum.ts`,
 * `Conv2DBackpropFilter.ts`) and TensorFlow's `tf.math.unsorted_segment_sum`
 * semantics (ids outside `[0, numSegments)` are dropped).
 *
 * - `UnsortedSegmentSum` is the gradient of `tf.gather`, so every embedding
 *   lookup needs it to train.
 * - `Conv2DBackpropFilter` is the filter gradient of `tf.conv1d` / `tf.conv2d`.
 * - `SplitV` is replaced: the stock kernel is slow enough to cost a Transformer
 *   training step a quarter of its time (2,000 → 2,800 tokens/s in the bench).
 * - `Slice` is replaced: the stock kernel copies its whole input out of the heap
 *   (`readSync`) before taking the slice, which made the Transformer's
 *   per-step slices of its rotary tables cost 13% of sampling.
 * - `Identity` (`tf.clone`, and the gradients of many ops) shares its input's
 *   memory, as `Reshape` does and the cpu backend's `Identity` does, instead of
 *   copying it: the copies were 4–5% of a Transformer training step.
 * - `GatherV2` along axis 0 (embedding lookups) copies whole rows; the stock
 *   kernel was 4% of an LSTM training step.
 *
 * Heap rule: `backend.makeOutput()` may grow the wasm memory, which detaches
 * every view taken before it, so all views are taken after the last
 * `makeOutput()` of a kernel.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";

/** Kernel names this module registers for the `wasm` backend. */
export const WASM_EXTRA_KERNELS: readonly string[] = ["UnsortedSegmentSum", "Conv2DBackpropFilter"];

/** Arguments tfjs passes to a kernel function, typed for the wasm backend. */
export interface WasmKernelArgs {
  inputs: Record<string, tf.TensorInfo>;
  backend: BackendWasm;
  attrs?: tf.NamedAttrMap;
}

/** A wasm kernel function. */
export type KernelFn = (args: WasmKernelArgs) => tf.TensorInfo;

/**
 * Registers `kernelFunc` in place of the wasm backend's `original` kernel, keeping its
 * setupFunc (the stock kernel's cwrap must exist for fallbacks, and a backend initialised
 * later still runs it).
 */
export function replaceKernel(original: tf.KernelConfig, kernelFunc: KernelFn): void {
  tf.unregisterKernel(original.kernelName, "wasm");
  tf.registerKernel({
    kernelName: original.kernelName,
    backendName: "wasm",
    setupFunc: original.setupFunc,
    disposeFunc: original.disposeFunc,
    kernelFunc: kernelFunc as unknown as tf.KernelFunc,
  });
}

/** Runs the wasm backend's currently registered `kernelName` kernel. */
export function runWasmKernel(
  kernelName: string,
  inputs: Record<string, tf.TensorInfo | undefined>,
  backend: BackendWasm,
  attrs: tf.NamedAttrMap = {},
): tf.TensorInfo {
  const kernel = tf.getKernel(kernelName, "wasm")!;
  return (kernel.kernelFunc as unknown as KernelFn)({
    inputs: inputs as Record<string, tf.TensorInfo>,
    backend,
    attrs,
  });
}

/**
 * `UnsortedSegmentSum`: `out[s, ...] = sum of x[i, ...] over all i with
 * segmentIds[i] == s`. `segmentIds` covers the leading dimensions of `x`.
 */
function unsortedSegmentSum({ inputs, backend, attrs }: WasmKernelArgs): tf.TensorInfo {
  const x = inputs.x;
  const segmentIds = inputs.segmentIds;
  const numSegments = attrs?.numSegments as number;
  if (x.dtype !== "float32" && x.dtype !== "int32") {
    throw new Error(
      `Cannot run UnsortedSegmentSum on wasm: dtype "${x.dtype}" is not supported, use float32 or int32`,
    );
  }
  const idsRank = segmentIds.shape.length;
  const numIds = tf.util.sizeFromShape(segmentIds.shape);
  const innerShape = x.shape.slice(idsRank);
  const innerSize = tf.util.sizeFromShape(innerShape);
  const out = backend.makeOutput([numSegments, ...innerShape], x.dtype); // [numSegments, ...inner]
  // Views only after makeOutput (it may grow and detach the heap).
  const outVals = backend.typedArrayFromHeap(out) as Float32Array | Int32Array;
  const xVals = backend.typedArrayFromHeap(x) as Float32Array | Int32Array; // [numIds, ...inner]
  const ids = backend.typedArrayFromHeap(segmentIds) as Int32Array; // [numIds]
  outVals.fill(0);
  for (let i = 0; i < numIds; i++) {
    const segment = ids[i];
    if (segment < 0 || segment >= numSegments) continue;
    const src = i * innerSize;
    const dst = segment * innerSize;
    for (let j = 0; j < innerSize; j++) outVals[dst + j] += xVals[src + j];
  }
  return out;
}

/**
 * `Conv2DBackpropFilter`: dW[wR, wC, d1, d2] = sum over batch and output
 * positions of x * dy, as in the cpu kernel (dilations are 1: tfjs does not
 * support dilated conv gradients).
 */
function conv2DBackpropFilter({ inputs, backend, attrs }: WasmKernelArgs): tf.TensorInfo {
  const x = inputs.x;
  const dy = inputs.dy;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as {
    strides: [number, number] | number;
    pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
    dataFormat: "NHWC" | "NCHW";
    dimRoundingMode?: "floor" | "round" | "ceil";
    filterShape: [number, number, number, number];
  };
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    tf.backend_util.convertConv2DDataFormat(dataFormat),
  );
  const { strideHeight, strideWidth, filterHeight, filterWidth, inChannels, outChannels } = info;
  const channelsLast = info.dataFormat === "channelsLast";
  const topPad = info.padInfo.top;
  const leftPad = info.padInfo.left;
  // Element strides of x and dy for (batch, row, column, channel).
  const [xB, xR, xC, xD] = channelsLast
    ? [info.inHeight * info.inWidth * inChannels, info.inWidth * inChannels, inChannels, 1]
    : [inChannels * info.inHeight * info.inWidth, info.inWidth, 1, info.inHeight * info.inWidth];
  const [yB, yR, yC, yD] = channelsLast
    ? [info.outHeight * info.outWidth * outChannels, info.outWidth * outChannels, outChannels, 1]
    : [
      outChannels * info.outHeight * info.outWidth,
      info.outWidth,
      1,
      info.outHeight * info.outWidth,
    ];

  const out = backend.makeOutput(info.filterShape, "float32"); // [fh, fw, inC, outC]
  const dW = backend.typedArrayFromHeap(out) as Float32Array;
  const xVals = backend.typedArrayFromHeap(x) as Float32Array;
  const dyVals = backend.typedArrayFromHeap(dy) as Float32Array;
  for (let wR = 0; wR < filterHeight; wR++) {
    const yRMin = Math.max(0, Math.ceil((topPad - wR) / strideHeight));
    const yRMax = Math.min(info.outHeight, (info.inHeight + topPad - wR) / strideHeight);
    for (let wC = 0; wC < filterWidth; wC++) {
      const yCMin = Math.max(0, Math.ceil((leftPad - wC) / strideWidth));
      const yCMax = Math.min(info.outWidth, (info.inWidth + leftPad - wC) / strideWidth);
      for (let d1 = 0; d1 < inChannels; d1++) {
        for (let d2 = 0; d2 < outChannels; d2++) {
          let dot = 0;
          for (let b = 0; b < info.batchSize; b++) {
            for (let yRow = yRMin; yRow < yRMax; yRow++) {
              const xRow = wR + yRow * strideHeight - topPad;
              for (let yCol = yCMin; yCol < yCMax; yCol++) {
                const xCol = wC + yCol * strideWidth - leftPad;
                dot += xVals[b * xB + xRow * xR + xCol * xC + d1 * xD] *
                  dyVals[b * yB + yRow * yR + yCol * yC + d2 * yD];
              }
            }
          }
          dW[((wR * filterWidth + wC) * inChannels + d1) * outChannels + d2] = dot;
        }
      }
    }
  }
  return out;
}

/**
 * `SplitV` as contiguous copies on the wasm heap. The stock kernel slices each
 * output with the generic `Slice`, which walks the whole input per output: it
 * took 24 ms to split a Transformer's q, k, v `[4096, 768]` here, 8% of a
 * training step.
 */
function splitV({ inputs, backend, attrs }: WasmKernelArgs): tf.TensorInfo[] {
  const x = inputs.x;
  const { numOrSizeSplits, axis } = attrs as unknown as {
    numOrSizeSplits: number | number[];
    axis: number;
  };
  const $axis = tf.util.parseAxisParam(axis, x.shape)[0];
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, $axis);
  const outer = tf.util.sizeFromShape(x.shape.slice(0, $axis));
  const inner = tf.util.sizeFromShape(x.shape.slice($axis + 1));
  const axisLength = x.shape[$axis];
  const outputs = sizes.map((size) => {
    const shape = [...x.shape];
    shape[$axis] = size;
    return backend.makeOutput(shape, x.dtype);
  });
  // Views only after every makeOutput (it may grow and detach the heap).
  const xVals = backend.typedArrayFromHeap(x);
  let offset = 0;
  outputs.forEach((output, k) => {
    const outVals = backend.typedArrayFromHeap(output);
    const block = sizes[k] * inner;
    for (let o = 0; o < outer; o++) {
      const from = (o * axisLength + offset) * inner;
      outVals.set(xVals.subarray(from, from + block), o * block);
    }
    offset += sizes[k];
  });
  return outputs;
}

/** The stock kernels {@link registerWasmKernels} replaced, for the cases the new ones leave to them. */
const ORIGINALS = new Map<string, KernelFn>();

/**
 * `Slice` reading its input in place on the heap. Copies each run along the
 * last axis (one copy in all when the slice is contiguous). String tensors go
 * to the stock kernel.
 */
function slice({ inputs, backend, attrs }: WasmKernelArgs): tf.TensorInfo {
  const x = inputs.x;
  if (x.dtype === "string") return ORIGINALS.get("Slice")!({ inputs, backend, attrs });
  const [begin, size] = tf.slice_util.parseSliceParams(
    x as tf.Tensor,
    attrs!.begin as number[],
    attrs!.size as number[],
  );
  const out = backend.makeOutput(size, x.dtype);
  // Views only after makeOutput (it may grow and detach the heap).
  const outVals = backend.typedArrayFromHeap(out);
  const xVals = backend.typedArrayFromHeap(x);
  const strides = tf.util.computeStrides(x.shape);
  const total = tf.util.sizeFromShape(size);
  if (total === 0) return out;
  if (tf.slice_util.isSliceContinous(x.shape, begin, size)) {
    const from = tf.slice_util.computeFlatOffset(begin, strides);
    outVals.set(xVals.subarray(from, from + total));
    return out;
  }
  const rank = x.shape.length;
  const run = size[rank - 1];
  const index = new Array(rank - 1).fill(0); // position among the outer axes of the output
  for (let at = 0; at < total; at += run) {
    let from = begin[rank - 1];
    for (let d = 0; d < rank - 1; d++) from += (begin[d] + index[d]) * strides[d];
    outVals.set(xVals.subarray(from, from + run), at);
    for (let d = rank - 2; d >= 0; d--) {
      if (++index[d] < size[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

/**
 * `GatherV2` along axis 0 (embedding lookups) as one contiguous copy per index. The stock
 * kernel took 30 ms to look up 4,096 rows of a 388 x 256 table (4% of an LSTM training step)
 * and 0.15 ms for 16 rows. Other axes, batch dimensions and dtypes go to the stock kernel.
 */
function gatherV2({ inputs, backend, attrs }: WasmKernelArgs): tf.TensorInfo {
  const { x, indices } = inputs;
  const rank = x.shape.length;
  const axis = (attrs!.axis as number) < 0 ? (attrs!.axis as number) + rank : attrs!.axis;
  if (
    axis !== 0 || (attrs!.batchDims ?? 0) !== 0 || rank === 0 || indices.dtype !== "int32" ||
    (x.dtype !== "float32" && x.dtype !== "int32")
  ) {
    return ORIGINALS.get("GatherV2")!({ inputs, backend, attrs });
  }
  const rows = x.shape[0];
  const inner = tf.util.sizeFromShape(x.shape.slice(1));
  const count = tf.util.sizeFromShape(indices.shape);
  const out = backend.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
  // Views only after makeOutput (it may grow and detach the heap).
  const outVals = backend.typedArrayFromHeap(out) as Float32Array | Int32Array;
  const xVals = backend.typedArrayFromHeap(x) as Float32Array | Int32Array;
  const ids = backend.typedArrayFromHeap(indices) as Int32Array;
  for (let i = 0; i < count; i++) {
    const id = ids[i];
    if (id < 0 || id >= rows) {
      backend.disposeData(out.dataId);
      throw new Error(`Cannot gather: index ${id} (at ${i}) is not in [0, ${rows - 1}]`);
    }
    outVals.set(xVals.subarray(id * inner, (id + 1) * inner), i * inner);
  }
  return out;
}

/**
 * `Identity` sharing the input's memory (reference-counted, like `Reshape`):
 * tensors never change in place (the one writer, `kv_cache.ts`, writes only rows
 * that no tensor sharing the memory reads yet), so a copy buys nothing. String
 * tensors go to the stock kernel.
 */
function identity({ inputs, backend, attrs }: WasmKernelArgs): tf.TensorInfo {
  const x = inputs.x;
  if (x.dtype === "string") return ORIGINALS.get("Identity")!({ inputs, backend, attrs });
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/** Stock wasm kernels replaced by faster ones (the originals are kept for fallback). */
const REPLACED: Record<string, (args: WasmKernelArgs) => tf.TensorInfo | tf.TensorInfo[]> = {
  GatherV2: gatherV2,
  SplitV: splitV,
  Slice: slice,
  Identity: identity,
};

const KERNELS: Record<string, (args: WasmKernelArgs) => tf.TensorInfo> = {
  UnsortedSegmentSum: unsortedSegmentSum,
  Conv2DBackpropFilter: conv2DBackpropFilter,
};

/**
 * Registers the kernels in {@link WASM_EXTRA_KERNELS} for the `wasm` backend.
 * Safe to call many times and before the backend is initialised; a kernel
 * that is already registered (by a newer tfjs or by an earlier call) is kept.
 *
 * @returns the kernel names this call registered (empty when all were there)
 * @example
 * ```ts
 * import { registerWasmKernels } from "./wasm_kernels.ts";
 * registerWasmKernels();
 * ```
 */
export function registerWasmKernels(): string[] {
  const added: string[] = [];
  for (const [kernelName, kernelFunc] of Object.entries(REPLACED)) {
    const current = tf.getKernel(kernelName, "wasm");
    if (current?.kernelFunc === (kernelFunc as unknown)) continue;
    if (current === undefined) {
      tf.registerKernel({
        kernelName,
        backendName: "wasm",
        kernelFunc: kernelFunc as unknown as tf.KernelFunc,
      });
    } else {
      // replaceKernel keeps the stock kernel's setup (its cwrap): the fallback to it needs it.
      ORIGINALS.set(kernelName, current.kernelFunc as unknown as KernelFn);
      replaceKernel(current, kernelFunc as KernelFn);
    }
    added.push(kernelName);
  }
  for (const [kernelName, kernelFunc] of Object.entries(KERNELS)) {
    if (tf.getKernel(kernelName, "wasm") !== undefined) continue;
    tf.registerKernel({
      kernelName,
      backendName: "wasm",
      kernelFunc: kernelFunc as unknown as tf.KernelFunc,
    });
    added.push(kernelName);
  }
  return added;
}
