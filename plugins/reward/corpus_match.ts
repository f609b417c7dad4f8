/**
 * `reward/corpus-match`: how close a piece's statistics are to where the real
 * corpus lies, in [0, 1].
 *
 * score = Σ w_f·c(f) / Σ w_f over the features f below, each raw value matched
 * to real excerpts of the piece's length (`"match"` calibration, see
 * `plugins/_music/calibration.ts`: 1 inside the central 80% of real values,
 * 1 / (1 + (d / s)²) at distance d outside it, s the real spread):
 * - `polyphony`: mean number of notes sounding while any sounds (MusPy);
 * - `noteDensity`: onsets per second from the first onset to the last note end;
 * - `pitchClassEntropy`: entropy in bits of the pitch-class histogram (MusPy);
 * - `velocitySpread`: standard deviation of the note velocities;
 * - `interOnset`: mean time between consecutive distinct onsets, in seconds
 *   (Yang & Lerch's `avg_IOI`);
 * - `pitchRange`: highest minus lowest pitch (MusPy, Yang & Lerch);
 * - `pitchInterval`: mean absolute interval between consecutive notes in
 *   (startSec, pitch) order (Yang & Lerch's `avg_pitch_shift`);
 * - `noteLength`: mean note length in seconds;
 * - `meanPitch`: mean MIDI pitch (the register).
 *
 * Unlike the quality terms, none of these has a better direction: a piece is
 * rewarded for being where real music is, which is what keeps a policy from
 * winning the other terms with music that is nothing like the corpus (one
 * voice, one velocity, a drone). A feature undefined for a piece (interval and
 * inter-onset time with one note) scores as often as real excerpts leave it
 * undefined. A piece without notes scores 0.
 *
 * @module
 */

import { definePlugin, p } from "../../mod.ts";
import type { RewardTerm } from "../_music/components.ts";
import { pitchClassEntropy, pitchRange, polyphony } from "../_music/metrics.ts";
import { pieceEndSec } from "../_music/theory.ts";
import { pitchSequence } from "../_music/ngrams.ts";
import type { Piece } from "../_music/types.ts";
import { calibratedTerm } from "./_calibrated.ts";

/** The features of {@linkcode corpusMatchFeatures}, with their spread floors. */
export const CORPUS_MATCH_FEATURES = {
  polyphony: 0.1,
  noteDensity: 0.25,
  pitchClassEntropy: 0.05,
  velocitySpread: 1,
  interOnset: 0.01,
  pitchRange: 1,
  pitchInterval: 0.25,
  noteLength: 0.02,
  meanPitch: 1,
} as const;

/** A feature name of `reward/corpus-match`. */
export type CorpusMatchFeature = keyof typeof CORPUS_MATCH_FEATURES;

/**
 * The raw features of one piece (see the module doc); NaN where undefined.
 *
 * @param piece The piece.
 * @returns The features by name.
 * @example
 * ```ts
 * import { corpusMatchFeatures } from "./corpus_match.ts";
 * const note = (pitch: number, startSec: number, velocity: number) =>
 *   ({ pitch, startSec, endSec: startSec + 0.5, velocity });
 * const f = corpusMatchFeatures({
 *   id: "x", tempoBpm: 120, beatsPerBar: 4, beatsSec: [0, 0.5, 1, 1.5],
 *   notes: [note(60, 0, 60), note(64, 0, 80), note(67, 1, 100)],
 * });
 * f.polyphony; // 1.5: two notes for 0.5 s, one for 0.5 s
 * f.pitchInterval; // 3.5: 60 -> 64 -> 67
 * f.interOnset; // 1: onsets at 0 and 1 s
 * ```
 */
export function corpusMatchFeatures(piece: Piece): Record<CorpusMatchFeature, number> {
  const notes = piece.notes;
  const n = notes.length;
  if (n === 0) {
    return {
      polyphony: NaN,
      noteDensity: NaN,
      pitchClassEntropy: NaN,
      velocitySpread: NaN,
      interOnset: NaN,
      pitchRange: NaN,
      pitchInterval: NaN,
      noteLength: NaN,
      meanPitch: NaN,
    };
  }
  let firstStart = Infinity, velocitySum = 0, velocitySq = 0, lengthSum = 0, pitchSum = 0;
  for (const note of notes) {
    firstStart = Math.min(firstStart, note.startSec);
    velocitySum += note.velocity;
    velocitySq += note.velocity * note.velocity;
    lengthSum += note.endSec - note.startSec;
    pitchSum += note.pitch;
  }
  const velocityMean = velocitySum / n;
  const spanSec = Math.max(pieceEndSec(notes) - firstStart, 1e-3);
  const onsets = [...new Set(notes.map((x) => x.startSec))].sort((a, b) => a - b);
  const pitches = pitchSequence(notes);
  let intervalSum = 0;
  for (let i = 1; i < pitches.length; i++) intervalSum += Math.abs(pitches[i] - pitches[i - 1]);
  return {
    polyphony: polyphony(piece),
    noteDensity: n / spanSec,
    pitchClassEntropy: pitchClassEntropy(piece),
    velocitySpread: Math.sqrt(Math.max(0, velocitySq / n - velocityMean * velocityMean)),
    interOnset: onsets.length > 1
      ? (onsets[onsets.length - 1] - onsets[0]) / (onsets.length - 1)
      : NaN,
    pitchRange: pitchRange(piece),
    pitchInterval: n > 1 ? intervalSum / (n - 1) : NaN,
    noteLength: lengthSum / n,
    meanPitch: pitchSum / n,
  };
}

const weightParams = Object.fromEntries(
  Object.keys(CORPUS_MATCH_FEATURES).map((name) => [
    `${name}Weight`,
    p.number({ default: 1, min: 0, description: `Weight of ${name} matched to the corpus` }),
  ]),
) as Record<`${CorpusMatchFeature}Weight`, ReturnType<typeof p.number>>;

export default definePlugin({
  name: "reward/corpus-match",
  kind: "reward",
  version: "1.0.0",
  description:
    "Rewards pieces whose polyphony, density, pitch-class entropy, velocity spread, inter-onset time, range, intervals, note length and register lie where the corpus's do",
  params: weightParams,
  create(params): RewardTerm {
    const weights = params as Record<string, number>;
    return calibratedTerm({
      name: "reward/corpus-match",
      params,
      specs: Object.entries(CORPUS_MATCH_FEATURES).map(([name, minScale]) => ({
        name,
        weight: weights[`${name}Weight`],
        direction: "match" as const,
        minScale,
      })),
      parts: (pieces) => pieces.map(corpusMatchFeatures),
    });
  },
});
