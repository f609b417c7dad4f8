/**
 * Calibration of reward parts on a reference corpus.
 *
 * A raw part (scale fit, consonance, polyphony, ...) has its own range and its
 * own typical value in real music: real piano's top line leaps, so a raw
 * smoothness part scores real pieces 0.55, and a one-voice scale walk scores
 * higher than any real piece. Calibration turns a raw value x into a score in
 * [0, 1] by where x lies against the same part measured on real excerpts of
 * the same length:
 *
 * - lo, hi: the 10th and 90th percentiles of the real values (`coverage` 0.8);
 *   s: their spread, (hi − lo) / 2.56 (the standard deviation for a normal
 *   distribution), at least `minScale`.
 * - d, the distance from where real music is: for a part where higher is
 *   better (`"higher"`) d = max(0, lo − x); lower is better (`"lower"`)
 *   d = max(0, x − hi); to be matched (`"match"`) d = max(0, lo − x, x − hi).
 * - score = 1 / (1 + (d / s)²): 1 for the central 80% of real music, 0.5 one
 *   spread beyond it, 0.1 three spreads beyond. The heavy tail keeps a
 *   gradient for a policy that is far off.
 *
 * A part that is undefined for a piece (consonance of one voice, leap
 * resolution without leaps) is not dropped: it scores min(1, u / 0.1), with u
 * the share of real excerpts for which it is undefined too. Being undefined is
 * normal when at least one real excerpt in ten is, and scores 0 when real
 * music never is.
 *
 * @module
 */

/** Which way a part is judged against real music. */
export type Direction = "higher" | "lower" | "match";

/** Central share of real values that scores full marks. */
export const COVERAGE = 0.8;
/** Share of undefined real values at which an undefined value scores full marks. */
export const UNDEFINED_TYPICAL_SHARE = 0.1;

/** A part's calibration: where real music lies. */
export interface PartCalibration {
  direction: Direction;
  /** 10th percentile of the defined real values (NaN when none is defined). */
  lo: number;
  /** 90th percentile of the defined real values. */
  hi: number;
  /** Spread s: (hi − lo) / 2.56, at least the floor. */
  scale: number;
  /** Share of real values that are undefined (NaN). */
  undefinedShare: number;
  /** Number of real values measured. */
  count: number;
}

/** The q-quantile (0..1) of sorted values, linearly interpolated. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const at = q * (sorted.length - 1);
  const i = Math.floor(at);
  const frac = at - i;
  return i + 1 < sorted.length ? sorted[i] * (1 - frac) + sorted[i + 1] * frac : sorted[i];
}

/**
 * Calibrates one part on real values.
 *
 * @param values The part measured on real excerpts (NaN where undefined).
 * @param options `direction`, and `minScale`, the floor of the spread (in the
 *   part's units: a part whose real values barely vary still leaves room).
 * @returns The calibration.
 * @example
 * ```ts
 * import { calibratePart, calibratedScore } from "./calibration.ts";
 * const real = Array.from({ length: 101 }, (_, i) => 0.5 + i / 500); // 0.5 .. 0.7
 * const cal = calibratePart(real, { direction: "match", minScale: 0.01 });
 * calibratedScore(0.6, cal); // 1: in the middle of real music
 * calibratedScore(0.1, cal) < 0.02; // true: far below it
 * calibratedScore(NaN, cal); // 0: real music is never undefined here
 * ```
 */
export function calibratePart(
  values: readonly number[],
  options: { direction: Direction; minScale: number },
): PartCalibration {
  const defined = values.filter(Number.isFinite).sort((a, b) => a - b);
  const tail = (1 - COVERAGE) / 2;
  const lo = quantile(defined, tail);
  const hi = quantile(defined, 1 - tail);
  const spread = defined.length > 0 ? (hi - lo) / 2.56 : NaN;
  return {
    direction: options.direction,
    lo,
    hi,
    scale: Math.max(Number.isFinite(spread) ? spread : 0, options.minScale),
    undefinedShare: values.length > 0 ? 1 - defined.length / values.length : 1,
    count: values.length,
  };
}

/**
 * The calibrated score of a raw value (see the module doc).
 *
 * @param value The raw part value (NaN when undefined for the piece).
 * @param cal The part's calibration.
 * @returns A score in [0, 1].
 */
export function calibratedScore(value: number, cal: PartCalibration): number {
  if (!Number.isFinite(value)) return Math.min(1, cal.undefinedShare / UNDEFINED_TYPICAL_SHARE);
  // Real music never defines this part: a defined value is as atypical as can be.
  if (!Number.isFinite(cal.lo)) return 0;
  const below = Math.max(0, cal.lo - value);
  const above = Math.max(0, value - cal.hi);
  const d = cal.direction === "higher"
    ? below
    : cal.direction === "lower"
    ? above
    : Math.max(below, above);
  const z = d / cal.scale;
  return 1 / (1 + z * z);
}

/** One part of a calibrated term: its name, weight and direction. */
export interface PartSpec {
  name: string;
  weight: number;
  direction: Direction;
  /** Floor of the spread, in the part's units. */
  minScale: number;
  /** The param that sets the weight, for error messages (default `<name>Weight`). */
  param?: string;
  /**
   * Which real excerpts calibrate the part: `"train"` (default) or
   * `"heldOut"` (for parts that compare a piece with the train pieces, such
   * as novelty's copy check: real music must be measured on pieces not in train).
   */
  excerpts?: "train" | "heldOut";
}

/** Floor of a part's score inside the geometric mean, so one zero part does not zero the term. */
export const PART_FLOOR = 0.01;

/**
 * Weighted geometric mean of calibrated part scores, each floored at
 * {@linkcode PART_FLOOR} (parts with weight 0 are skipped). Geometric, not
 * arithmetic: a piece must be where real music is on every part at once; with
 * an arithmetic mean, noise that is typical on six of nine features and far
 * off on three still scores two thirds.
 *
 * @param raw The raw values by part name.
 * @param specs The parts.
 * @param calibrations Calibrations by part name.
 * @returns The term's score in [0, 1].
 */
export function combineParts(
  raw: Record<string, number>,
  specs: readonly PartSpec[],
  calibrations: Record<string, PartCalibration>,
): number {
  let sum = 0, weights = 0;
  for (const spec of specs) {
    if (spec.weight <= 0) continue;
    const score = calibratedScore(raw[spec.name], calibrations[spec.name]);
    sum += spec.weight * Math.log(Math.max(PART_FLOOR, score));
    weights += spec.weight;
  }
  return weights > 0 ? Math.exp(sum / weights) : 0;
}
