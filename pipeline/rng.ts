/**
 * Seeded random numbers: sfc32 (Chris Doty-Humphrey's Small Fast Counting
 * generator, as in PractRand), seeded through splitmix32 so that nearby seeds
 * give unrelated streams.
 *
 * @module
 */

import type { Rng } from "./plugin.ts";

function splitmix32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** FNV-1a hash of a string to 32 bits, used to mix stage names into seeds. */
export function hashString32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * Creates a seeded generator.
 *
 * @param seed Any integer; only its low 32 bits matter.
 * @returns A generator whose sequence depends only on `seed`.
 * @example
 * ```ts
 * import { createRng } from "./rng.ts";
 * const a = createRng(7), b = createRng(7);
 * console.assert(a.next() === b.next());
 * ```
 */
export function createRng(seed: number): Rng {
  const init = splitmix32(seed);
  let a = init(), b = init(), c = init(), d = init();
  let spareNormal: number | null = null;
  const nextU32 = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t;
  };
  const rng: Rng = {
    next: () => nextU32() / 4294967296,
    int: (n) => Math.floor((nextU32() / 4294967296) * n),
    normal() {
      if (spareNormal !== null) {
        const v = spareNormal;
        spareNormal = null;
        return v;
      }
      // Box-Muller; 1 - u keeps log() away from 0.
      const u = 1 - rng.next();
      const v = rng.next();
      const r = Math.sqrt(-2 * Math.log(u));
      spareNormal = r * Math.sin(2 * Math.PI * v);
      return r * Math.cos(2 * Math.PI * v);
    },
    seed: () => nextU32(),
    getState: () => [a, b, c, d],
    setState(state) {
      [a, b, c, d] = state.map((x) => x >>> 0);
      spareNormal = null;
    },
  };
  return rng;
}
