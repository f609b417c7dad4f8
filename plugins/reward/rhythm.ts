/**
 * `reward/rhythm`: rhythmic regularity of a piece, in [0, 1].
 *
 * score = (wG·c(G) + wR·c(R) + wD·c(D) + wE·c(E)) / (wG + wR + wD + wE), where
 * c() calibrates each raw part on real excerpts of the piece's length (see
 * `plugins/_music/calibration.ts`): G, R and E higher is better, D is matched
 * to the corpus. The raw parts are:
 * - G, on the grid: share of note onsets within `toleranceSteps` grid steps of
 *   the nearest step of a grid of `stepsPerBeat` steps per beat (sixteenths
 *   by default), the grid following the piece's `beatsSec`.
 * - R, groove consistency: MusPy's `groove_consistency` (Wu & Yang, "The Jazz
 *   Transformer on the Front Line", ISMIR 2020): 1 − mean over neighbouring
 *   bars of the Hamming distance between their onset patterns on that grid,
 *   divided by the steps per bar.
 * - D, density: notes per beat between the first onset and the last note end
 *   (at least one beat); scored by how close it is to the corpus's range.
 * - E, few empty beats: 1 − MusPy's `empty_beat_rate` (share of beats in
 *   which no note sounds).
 *
 * A part undefined for a piece (R with fewer than two bars) is not dropped: it
 * scores as often as real excerpts of that length leave it undefined. A piece
 * without notes scores 0.
 *
 * @module
 */

import { definePlugin, p } from "../../mod.ts";
import type { RewardTerm } from "../_music/components.ts";
import { emptyBeatRate, grooveConsistency } from "../_music/metrics.ts";
import { beatGrid, pieceEndSec } from "../_music/theory.ts";
import { calibratedTerm } from "./_calibrated.ts";
import type { Piece } from "../_music/types.ts";

/** The four parts of the rhythm score of one piece (NaN where undefined). */
export interface RhythmParts {
  onGrid: number;
  groove: number;
  density: number;
  fewEmptyBeats: number;
}

/** Options of {@linkcode rhythmParts}; the plugin's params of the same names. */
export interface RhythmOptions {
  stepsPerBeat: number;
  toleranceSteps: number;
}

/**
 * Computes G, R, D and E (see the module doc) for one piece.
 *
 * @param piece The piece.
 * @param options Grid and density settings.
 * @returns The parts; all NaN for a piece without notes.
 */
export function rhythmParts(piece: Piece, options: RhythmOptions): RhythmParts {
  const notes = piece.notes;
  if (notes.length === 0) return { onGrid: NaN, groove: NaN, density: NaN, fewEmptyBeats: NaN };
  const grid = beatGrid(piece);
  let onGridCount = 0;
  let firstStart = Infinity;
  for (const note of notes) {
    const step = grid.position(note.startSec) * options.stepsPerBeat;
    if (Math.abs(step - Math.round(step)) <= options.toleranceSteps + 1e-9) onGridCount++;
    firstStart = Math.min(firstStart, note.startSec);
  }
  const spanBeats = Math.max(1, grid.position(pieceEndSec(notes)) - grid.position(firstStart));
  const density = notes.length / spanBeats;
  return {
    onGrid: onGridCount / notes.length,
    groove: grooveConsistency(piece, { stepsPerBeat: options.stepsPerBeat }),
    density,
    fewEmptyBeats: 1 - emptyBeatRate(piece),
  };
}

export default definePlugin({
  name: "reward/rhythm",
  kind: "reward",
  version: "2.0.0",
  description:
    "Rewards onsets on the beat grid, the same groove from bar to bar, a sensible note density and few empty beats",
  params: {
    stepsPerBeat: p.integer({
      default: 4,
      min: 1,
      description: "Grid steps per beat (4: sixteenth notes when the beat is a quarter note)",
    }),
    toleranceSteps: p.number({
      default: 0.15,
      min: 0,
      max: 0.5,
      description:
        "How far from a grid step an onset may lie and still count as on it, in grid steps",
    }),
    gridWeight: p.number({
      default: 1,
      min: 0,
      description: "Weight of the share of onsets on the grid",
    }),
    grooveWeight: p.number({
      default: 1,
      min: 0,
      description: "Weight of groove consistency between neighbouring bars",
    }),
    densityWeight: p.number({
      default: 1,
      min: 0,
      description: "Weight of note density (notes per beat) matched to the corpus",
    }),
    emptyBeatWeight: p.number({
      default: 1,
      min: 0,
      description: "Weight of the share of beats in which some note sounds",
    }),
  },
  create(params): RewardTerm {
    return calibratedTerm({
      name: "reward/rhythm",
      params,
      specs: [
        {
          name: "onGrid",
          param: "gridWeight",
          weight: params.gridWeight,
          direction: "higher",
          minScale: 0.02,
        },
        {
          name: "groove",
          param: "grooveWeight",
          weight: params.grooveWeight,
          direction: "higher",
          minScale: 0.02,
        },
        { name: "density", weight: params.densityWeight, direction: "match", minScale: 0.1 },
        {
          name: "fewEmptyBeats",
          param: "emptyBeatWeight",
          weight: params.emptyBeatWeight,
          direction: "higher",
          minScale: 0.02,
        },
      ],
      parts: (pieces) => pieces.map((piece) => ({ ...rhythmParts(piece, params) })),
    });
  },
});
