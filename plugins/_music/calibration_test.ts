import assert from "node:assert/strict";
import {
  calibratedScore,
  calibratePart,
  combineParts,
  COVERAGE,
  PART_FLOOR,
  type PartCalibration,
  type PartSpec,
  quantile,
  UNDEFINED_TYPICAL_SHARE,
} from "./calibration.ts";

const close = (actual: number, expected: number, what = "") =>
  assert.ok(Math.abs(actual - expected) < 1e-12, `${what} ${actual} vs ${expected}`);

/** A calibration with real values between 1 and 9 (spread 3.125) and none undefined. */
const cal = (direction: PartCalibration["direction"], undefinedShare = 0): PartCalibration => ({
  direction,
  lo: 1,
  hi: 9,
  scale: 3.125,
  undefinedShare,
  count: 100,
});

Deno.test("quantile() interpolates linearly between sorted values", () => {
  const sorted = [1, 2, 3, 4, 5];
  // q·(n − 1): 0.4 → 1 + 0.4·(2 − 1); 3.6 → 4 + 0.6·(5 − 4).
  close(quantile(sorted, 0.1), 1.4);
  close(quantile(sorted, 0.9), 4.6);
  assert.equal(quantile(sorted, 0.5), 3);
  assert.equal(quantile(sorted, 0), 1);
  assert.equal(quantile(sorted, 1), 5);
  assert.equal(quantile([7], 0.9), 7);
  assert.ok(Number.isNaN(quantile([], 0.5)));
});

Deno.test("calibratePart() takes the 10th and 90th percentiles of the defined values", () => {
  assert.equal(COVERAGE, 0.8);
  // 0..10 in shuffled order plus one undefined value: 12 values, 11 defined.
  const values = [7, NaN, 3, 10, 0, 5, 1, 9, 2, 8, 4, 6];
  const c = calibratePart(values, { direction: "match", minScale: 0.5 });
  // q 0.1 of 11 sorted values: index 1 → 1; q 0.9: index 9 → 9; spread (9 − 1) / 2.56.
  assert.equal(c.direction, "match");
  // (The tail (1 − 0.8) / 2 is 0.09999999999999998 in floating point.)
  close(c.lo, 1, "lo");
  close(c.hi, 9, "hi");
  close(c.scale, 8 / 2.56, "scale");
  close(c.undefinedShare, 1 / 12, "undefinedShare");
  assert.equal(c.count, 12);
});

Deno.test("calibratePart() floors the spread and handles parts that are never defined", () => {
  // Real values that do not vary still leave a spread of minScale.
  const flat = calibratePart([5, 5, 5, 5], { direction: "higher", minScale: 0.02 });
  assert.equal(flat.lo, 5);
  assert.equal(flat.hi, 5);
  assert.equal(flat.scale, 0.02);
  // Spread 0.8 / 2.56 = 0.3125 is below the floor 1.
  assert.equal(calibratePart([0, 0.8], { direction: "higher", minScale: 1 }).scale, 1);
  const never = calibratePart([NaN, NaN], { direction: "lower", minScale: 0.1 });
  assert.ok(Number.isNaN(never.lo) && Number.isNaN(never.hi));
  assert.equal(never.scale, 0.1);
  assert.equal(never.undefinedShare, 1);
  const none = calibratePart([], { direction: "match", minScale: 0.1 });
  assert.equal(none.undefinedShare, 1);
  assert.equal(none.count, 0);
});

Deno.test("calibratedScore() is 1 where real music is and falls off as 1 / (1 + z²)", () => {
  const s = 3.125;
  // "higher": only values below lo = 1 are penalised.
  assert.equal(calibratedScore(5, cal("higher")), 1);
  assert.equal(calibratedScore(1, cal("higher")), 1);
  assert.equal(calibratedScore(100, cal("higher")), 1);
  close(calibratedScore(1 - s, cal("higher")), 0.5, "one spread below");
  close(calibratedScore(1 - 3 * s, cal("higher")), 0.1, "three spreads below");
  close(calibratedScore(1 - 0.5 * s, cal("higher")), 0.8, "half a spread below");
  // "lower": only values above hi = 9 are penalised.
  assert.equal(calibratedScore(-100, cal("lower")), 1);
  close(calibratedScore(9 + s, cal("lower")), 0.5);
  close(calibratedScore(9 + 2 * s, cal("lower")), 0.2);
  // "match": both sides.
  assert.equal(calibratedScore(9, cal("match")), 1);
  close(calibratedScore(1 - s, cal("match")), 0.5);
  close(calibratedScore(9 + 3 * s, cal("match")), 0.1);
});

Deno.test("calibratedScore() scores an undefined part by how often real music leaves it undefined", () => {
  assert.equal(UNDEFINED_TYPICAL_SHARE, 0.1);
  // min(1, u / 0.1): never undefined in real music → 0; one in twenty → 0.5; one in ten or more → 1.
  assert.equal(calibratedScore(NaN, cal("higher", 0)), 0);
  close(calibratedScore(NaN, cal("higher", 0.05)), 0.5);
  close(calibratedScore(NaN, cal("match", 0.02)), 0.2);
  assert.equal(calibratedScore(NaN, cal("lower", 0.1)), 1);
  assert.equal(calibratedScore(NaN, cal("higher", 0.6)), 1);
  assert.equal(calibratedScore(Infinity, cal("higher", 0)), 0);
  // A defined value of a part that real music never defines is as atypical as can be.
  const never = calibratePart([NaN, NaN, NaN], { direction: "match", minScale: 1 });
  assert.equal(calibratedScore(0.5, never), 0);
  assert.equal(calibratedScore(NaN, never), 1);
});

Deno.test("combineParts() is the weighted geometric mean, each part floored at 0.01", () => {
  assert.equal(PART_FLOOR, 0.01);
  const specs: PartSpec[] = [
    { name: "a", weight: 2, direction: "higher", minScale: 0.1 },
    { name: "b", weight: 1, direction: "higher", minScale: 0.1 },
    { name: "c", weight: 0, direction: "higher", minScale: 0.1 },
  ];
  const calibrations = { a: cal("higher"), b: cal("higher"), c: cal("higher") };
  // a one spread below lo (0.5), b inside (1): (0.5² · 1)^(1/3).
  close(combineParts({ a: 1 - 3.125, b: 5, c: -1e9 }, specs, calibrations), 0.5 ** (2 / 3));
  // a far below (score ~1e-6, floored at 0.01), b undefined in a part real music leaves
  // undefined one time in twenty (0.5): (0.01² · 0.5)^(1/3).
  close(
    combineParts({ a: -1e4, b: NaN }, specs, {
      ...calibrations,
      b: cal("higher", 0.05),
    }),
    (0.01 ** 2 * 0.5) ** (1 / 3),
  );
  // A part with weight 0 is skipped, even without a calibration.
  assert.equal(combineParts({ a: 5, b: 5 }, specs, { a: cal("higher"), b: cal("higher") }), 1);
  // An arithmetic mean would give 2/3 for two perfect parts and one at zero; the geometric
  // mean gives 0.01^(1/3).
  const three: PartSpec[] = ["x", "y", "z"].map((name) => ({
    name,
    weight: 1,
    direction: "match",
    minScale: 0.1,
  }));
  const calibrations3 = { x: cal("match"), y: cal("match"), z: cal("match") };
  close(combineParts({ x: 5, y: 5, z: 1e6 }, three, calibrations3), 0.01 ** (1 / 3));
  assert.equal(
    combineParts({ a: 5 }, [{ name: "a", weight: 0, direction: "higher", minScale: 1 }], {}),
    0,
  );
});
