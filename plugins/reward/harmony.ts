/**
 * `reward/harmony`: harmonic consistency of a piece, in [0, 1].
 *
 * score = (wS·c(S) + wC·c(C) + wK·c(K)) / (wS + wC + wK), where c() calibrates
 * each raw part on real excerpts of the piece's length (higher is better; see
 * `plugins/_music/calibration.ts`), and the raw parts are:
 * - S, scale fit: the largest share of note time (seconds) that falls in one
 *   major or natural-minor scale, over all 24. MusPy's `scale_consistency`
 *   (Dong et al., "MusPy", ISMIR 2020), weighted by duration instead of count.
 * - C, consonance: Σ overlap·c(interval) / Σ overlap over every pair of notes
 *   sounding together, where overlap is the time in seconds they share and c
 *   is 1 for unison/octave, fifth, fourth, thirds and sixths, 0.5 for major
 *   second and minor seventh, 0 for minor second, major seventh and tritone
 *   (by interval class, so compounds count as their simple interval).
 * - K, no clusters: 1 − (time during which three pitches within a whole tone,
 *   p, p+1 and p+2, sound together) / (time during which any note sounds).
 *
 * A part that is undefined for a piece (C when no two notes overlap) is not
 * dropped: it scores as often as real excerpts leave it undefined (0 for piano,
 * which always has two voices somewhere). A piece without notes scores 0, so
 * silence never earns reward.
 *
 * @module
 */

import { definePlugin, p } from "../../mod.ts";
import type { RewardTerm } from "../_music/components.ts";
import {
  bestFittingScale,
  forEachOverlappingPair,
  intervalConsonance,
  pitchClassHistogram,
  soundingSegments,
} from "../_music/theory.ts";
import { calibratedTerm } from "./_calibrated.ts";
import type { Note } from "../_music/types.ts";

/** The three parts of the harmony score of one piece (NaN where undefined). */
export interface HarmonyParts {
  scaleFit: number;
  consonance: number;
  noClusters: number;
}

/**
 * Computes S, C and K (see the module doc) for one piece.
 *
 * @param notes The piece's notes.
 * @returns The parts; all NaN for a piece without sounding notes.
 */
export function harmonyParts(notes: readonly Note[]): HarmonyParts {
  const scaleFit = bestFittingScale(pitchClassHistogram(notes, "duration")).share;

  let overlapSum = 0, consonantSum = 0;
  forEachOverlappingPair(notes, (a, b, overlapSec) => {
    overlapSum += overlapSec;
    consonantSum += overlapSec * intervalConsonance(a.pitch, b.pitch);
  });
  const consonance = overlapSum > 0 ? consonantSum / overlapSum : NaN;

  let soundingSec = 0, clusterSec = 0;
  for (const seg of soundingSegments(notes)) {
    const dur = seg.endSec - seg.startSec;
    soundingSec += dur;
    const present = new Set(seg.pitches);
    if (seg.pitches.some((q) => present.has(q + 1) && present.has(q + 2))) clusterSec += dur;
  }
  const noClusters = soundingSec > 0 ? 1 - clusterSec / soundingSec : NaN;
  return { scaleFit, consonance, noClusters };
}

export default definePlugin({
  name: "reward/harmony",
  kind: "reward",
  version: "2.0.0",
  description:
    "Rewards note time in one major/minor scale, consonant simultaneous intervals and no semitone clusters",
  params: {
    scaleWeight: p.number({
      default: 1,
      min: 0,
      description:
        "Weight of the scale fit: the largest share of note time in one major/minor scale",
    }),
    consonanceWeight: p.number({
      default: 1,
      min: 0,
      description: "Weight of the consonance of notes sounding together, weighted by overlap time",
    }),
    clusterWeight: p.number({
      default: 1,
      min: 0,
      description:
        "Weight of the cluster penalty: share of sounding time free of three pitches within a whole tone",
    }),
  },
  create(params): RewardTerm {
    return calibratedTerm({
      name: "reward/harmony",
      params,
      specs: [
        {
          name: "scaleFit",
          param: "scaleWeight",
          weight: params.scaleWeight,
          direction: "higher",
          minScale: 0.02,
        },
        {
          name: "consonance",
          weight: params.consonanceWeight,
          direction: "higher",
          minScale: 0.02,
        },
        {
          name: "noClusters",
          param: "clusterWeight",
          weight: params.clusterWeight,
          direction: "higher",
          minScale: 0.02,
        },
      ],
      parts: (pieces) =>
        pieces.map((piece) => {
          if (!piece.notes.some((n) => n.endSec > n.startSec)) {
            return { scaleFit: NaN, consonance: NaN, noClusters: NaN };
          }
          return { ...harmonyParts(piece.notes) };
        }),
    });
  },
});
