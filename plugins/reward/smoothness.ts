/**
 * `reward/smoothness`: melodic and dynamic smoothness of a piece, in [0, 1].
 *
 * score = (wI·c(I) + wR·c(R) + wV·c(V) + wD·c(D)) / (wI + wR + wV + wD), where
 * c() calibrates each raw part on real excerpts of the piece's length (higher
 * is better; see `plugins/_music/calibration.ts`), and the raw parts, with the
 * melody the piece's top line (highest note of each chord, see `topLine`), are:
 * - I, interval sizes: mean over melodic intervals of f(|Δ| semitones), with
 *   f = 1 up to `maxStepSemitones` (steps and thirds), falling linearly to 0.5
 *   at `maxLeapSemitones` (the octave), and 0 beyond it.
 * - R, leap resolution: after RL Tuner (Jaques et al., "Sequence Tutor", ICML
 *   2017), the share of leaps of `minLeapSemitones` (a fifth) or more that are
 *   followed by a step (1–2 semitones) in the opposite direction.
 * - V, velocity changes: the mean velocity of the onsets in each beat; over
 *   each pair of consecutive beats with onsets, max(0, 1 − |Δ velocity| /
 *   `maxVelocityChange`), averaged.
 * - D, density changes: onsets per bar; over each pair of neighbouring bars
 *   (first to last bar with an onset), min(a, b) / max(a, b) (1 when both
 *   are empty), averaged.
 *
 * A part undefined for a piece (I with one melody note, R without leaps, V
 * with fewer than two beats with onsets, D with fewer than two bars) is not
 * dropped: it scores as often as real excerpts of that length leave it
 * undefined (a piece with no leap at all is rare in piano music and scores
 * low on R). A piece without notes scores 0.
 *
 * @module
 */

import { definePlugin, p } from "../../mod.ts";
import type { RewardTerm } from "../_music/components.ts";
import { beatGrid, beatsPerBarOf, countLeapResolutions, topLine } from "../_music/theory.ts";
import { calibratedTerm } from "./_calibrated.ts";
import type { Piece } from "../_music/types.ts";

/** Options of {@linkcode smoothnessParts}; the plugin's params of the same names. */
export interface SmoothnessOptions {
  maxStepSemitones: number;
  maxLeapSemitones: number;
  minLeapSemitones: number;
  maxVelocityChange: number;
}

/** The four parts of the smoothness score of one piece (NaN where undefined). */
export interface SmoothnessParts {
  intervals: number;
  leapResolution: number;
  velocity: number;
  density: number;
}

/** f(|Δ|) of the module doc for one melodic interval. */
export function intervalScore(semitones: number, options: SmoothnessOptions): number {
  const size = Math.abs(semitones);
  if (size <= options.maxStepSemitones) return 1;
  if (size > options.maxLeapSemitones) return 0;
  return 1 - 0.5 * (size - options.maxStepSemitones) /
      (options.maxLeapSemitones - options.maxStepSemitones);
}

function meanOf(values: number[]): number {
  return values.length > 0 ? values.reduce((a, b) => a + b, 0) / values.length : NaN;
}

/**
 * Computes I, R, V and D (see the module doc) for one piece.
 *
 * @param piece The piece.
 * @param options Interval and velocity settings.
 * @returns The parts (NaN where undefined).
 */
export function smoothnessParts(piece: Piece, options: SmoothnessOptions): SmoothnessParts {
  const melody = topLine(piece.notes).map((n) => n.pitch);
  const intervals: number[] = [];
  for (let i = 1; i < melody.length; i++) {
    intervals.push(intervalScore(melody[i] - melody[i - 1], options));
  }
  const { leaps, resolved } = countLeapResolutions(melody, {
    minLeapSemitones: options.minLeapSemitones,
  });

  const grid = beatGrid(piece);
  const beatOf = piece.notes.map((n) => Math.floor(grid.position(n.startSec) + 1e-9));

  // Mean onset velocity per beat, for beats with onsets, in beat order.
  const velocityByBeat = new Map<number, { sum: number; count: number }>();
  piece.notes.forEach((note, i) => {
    const entry = velocityByBeat.get(beatOf[i]) ?? { sum: 0, count: 0 };
    entry.sum += note.velocity;
    entry.count++;
    velocityByBeat.set(beatOf[i], entry);
  });
  const beatVelocities = [...velocityByBeat.entries()].sort((a, b) => a[0] - b[0])
    .map(([, e]) => e.sum / e.count);
  const velocityScores: number[] = [];
  for (let i = 1; i < beatVelocities.length; i++) {
    const change = Math.abs(beatVelocities[i] - beatVelocities[i - 1]);
    velocityScores.push(Math.max(0, 1 - change / options.maxVelocityChange));
  }

  const beatsPerBar = beatsPerBarOf(piece);
  const densityScores: number[] = [];
  if (beatOf.length > 0) {
    const barOf = beatOf.map((b) => Math.floor(b / beatsPerBar));
    // A loop, not Math.min(...barOf): spreading a long performance's notes overflows the stack.
    let firstBar = Infinity, lastBar = -Infinity;
    for (const bar of barOf) {
      firstBar = Math.min(firstBar, bar);
      lastBar = Math.max(lastBar, bar);
    }
    const counts = new Array<number>(lastBar - firstBar + 1).fill(0);
    for (const bar of barOf) counts[bar - firstBar]++;
    for (let i = 1; i < counts.length; i++) {
      const hi = Math.max(counts[i], counts[i - 1]);
      densityScores.push(hi === 0 ? 1 : Math.min(counts[i], counts[i - 1]) / hi);
    }
  }

  return {
    intervals: meanOf(intervals),
    leapResolution: leaps > 0 ? resolved / leaps : NaN,
    velocity: meanOf(velocityScores),
    density: meanOf(densityScores),
  };
}

export default definePlugin({
  name: "reward/smoothness",
  kind: "reward",
  version: "2.0.0",
  description:
    "Rewards a top line of steps and thirds with resolved leaps, and gradual changes of velocity and density",
  params: {
    maxStepSemitones: p.number({
      default: 4,
      min: 0,
      description:
        "Largest melodic interval that scores full marks, in semitones (4: a major third)",
    }),
    maxLeapSemitones: p.number({
      default: 12,
      min: 1,
      description: "Largest leap that scores anything, in semitones; it scores 0.5, wider leaps 0",
    }),
    minLeapSemitones: p.number({
      default: 7,
      min: 1,
      description: "Smallest leap that must be resolved by a step back, in semitones (7: a fifth)",
    }),
    maxVelocityChange: p.number({
      default: 32,
      min: 1,
      description: "Change of mean velocity between consecutive beats that scores 0",
    }),
    intervalWeight: p.number({
      default: 1,
      min: 0,
      description: "Weight of melodic interval sizes",
    }),
    resolutionWeight: p.number({
      default: 1,
      min: 0,
      description: "Weight of the share of leaps resolved by a step back",
    }),
    velocityWeight: p.number({
      default: 1,
      min: 0,
      description: "Weight of smooth velocity between consecutive beats",
    }),
    densityWeight: p.number({
      default: 1,
      min: 0,
      description: "Weight of smooth note density between neighbouring bars",
    }),
  },
  create(params): RewardTerm {
    if (!(params.maxLeapSemitones > params.maxStepSemitones)) {
      throw new Error(
        `Cannot create reward term "reward/smoothness": maxLeapSemitones (${params.maxLeapSemitones}) must be > maxStepSemitones (${params.maxStepSemitones})`,
      );
    }
    return calibratedTerm({
      name: "reward/smoothness",
      params,
      specs: [
        {
          name: "intervals",
          param: "intervalWeight",
          weight: params.intervalWeight,
          direction: "higher",
          minScale: 0.02,
        },
        {
          name: "leapResolution",
          param: "resolutionWeight",
          weight: params.resolutionWeight,
          direction: "higher",
          minScale: 0.02,
        },
        { name: "velocity", weight: params.velocityWeight, direction: "higher", minScale: 0.02 },
        { name: "density", weight: params.densityWeight, direction: "higher", minScale: 0.02 },
      ],
      parts: (pieces) => pieces.map((piece) => ({ ...smoothnessParts(piece, params) })),
    });
  },
});
