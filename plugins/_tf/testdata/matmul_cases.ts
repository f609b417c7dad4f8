/**
 * Shared by the matMul kernel tests (openblas_test.ts, wasm_matmul_test.ts): a
 * plain-JS reference product and the shapes to check.
 *
 * @module
 */

/**
 * Reference BatchMatMul in plain JS with full NumPy broadcasting of the batch
 * dims, written from the definition out[..., i, j] = sum_k A[..., i, k] B[..., k, j].
 */
export function referenceMatMul(
  aShape: number[],
  a: number[],
  bShape: number[],
  b: number[],
  transposeA: boolean,
  transposeB: boolean,
): number[] {
  const ar = aShape.length;
  const br = bShape.length;
  const m = transposeA ? aShape[ar - 1] : aShape[ar - 2];
  const k = transposeA ? aShape[ar - 2] : aShape[ar - 1];
  const n = transposeB ? bShape[br - 2] : bShape[br - 1];
  const outerA = aShape.slice(0, -2);
  const outerB = bShape.slice(0, -2);
  const rank = Math.max(outerA.length, outerB.length);
  const padA = [...new Array(rank - outerA.length).fill(1), ...outerA];
  const padB = [...new Array(rank - outerB.length).fill(1), ...outerB];
  const outer = padA.map((d, i) => Math.max(d, padB[i]));
  const batch = outer.reduce((p, d) => p * d, 1);
  const out: number[] = [];
  for (let flat = 0; flat < batch; flat++) {
    // Coordinates of this output batch, then the operands' batch indices.
    const coords: number[] = [];
    let rest = flat;
    for (let d = rank - 1; d >= 0; d--) {
      coords[d] = rest % outer[d];
      rest = Math.floor(rest / outer[d]);
    }
    let ia = 0;
    let ib = 0;
    for (let d = 0; d < rank; d++) {
      ia = ia * padA[d] + (padA[d] === 1 ? 0 : coords[d]);
      ib = ib * padB[d] + (padB[d] === 1 ? 0 : coords[d]);
    }
    const aAt = (i: number, kk: number) => a[ia * m * k + (transposeA ? kk * m + i : i * k + kk)];
    const bAt = (kk: number, j: number) => b[ib * k * n + (transposeB ? j * k + kk : kk * n + j)];
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let sum = 0;
        for (let kk = 0; kk < k; kk++) sum += aAt(i, kk) * bAt(kk, j);
        out.push(sum);
      }
    }
  }
  return out;
}

export interface MatMulCase {
  name: string;
  a: number[];
  b: number[];
  transposeA?: boolean;
  transposeB?: boolean;
  /** Stock kernels mishandle batch broadcasts other than "equal or 1". */
  stockWrong?: boolean;
}

export const CASES: MatMulCase[] = [
  { name: "plain", a: [5, 7], b: [7, 3] },
  { name: "transposed A", a: [7, 5], b: [7, 3], transposeA: true },
  { name: "transposed B", a: [5, 7], b: [3, 7], transposeB: true },
  { name: "both transposed", a: [7, 5], b: [3, 7], transposeA: true, transposeB: true },
  { name: "batched", a: [4, 5, 7], b: [4, 7, 3] },
  {
    name: "batched, both transposed",
    a: [4, 7, 5],
    b: [4, 3, 7],
    transposeA: true,
    transposeB: true,
  },
  { name: "broadcast batch of A", a: [1, 5, 7], b: [4, 7, 3] },
  { name: "broadcast batch of B", a: [4, 5, 7], b: [1, 7, 3] },
  { name: "rank 3 times rank 2", a: [2, 3, 5, 7], b: [7, 3] },
  { name: "rank 3 times rank 2, transposed B", a: [3, 5, 7], b: [3, 7], transposeB: true },
  { name: "rank 3 transposed A times rank 2", a: [3, 7, 5], b: [7, 3], transposeA: true },
  { name: "rank 2 times rank 3", a: [5, 7], b: [4, 7, 3] },
  { name: "general broadcast", a: [2, 1, 5, 7], b: [1, 3, 7, 3], stockWrong: true },
  { name: "empty inner dimension", a: [2, 0], b: [0, 3] },
  {
    name: "larger, transposed",
    a: [2, 96, 130],
    b: [2, 70, 96],
    transposeA: true,
    transposeB: true,
  },
];
