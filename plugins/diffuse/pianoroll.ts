/**
 * `diffuse/pianoroll`: refines pieces with a trained piano-roll denoiser by
 * SDEdit (Meng et al. 2022): each segment of `bars` bars is noised to level
 * `strength` and denoised back with deterministic DDIM (Song et al. 2021), so
 * the model pulls the roll towards what it learned music looks like while
 * the low noise level keeps most of the original. Rolls as in Polyffusion
 * (Min et al. 2023): `plugins/_music/pianoroll.ts`; maths:
 * `plugins/_tf/diffusion.ts`.
 *
 * What may change is set by `preserve`:
 *
 * - `"judge"` (default): every original note is judged on its own and leaves
 *   exactly as it came, moved to a nearby pitch with its onset, duration and
 *   velocity, or removed; nothing is added (`plugins/_music/note_judge.ts`:
 *   local key, minor-second clashes weighted by overlap, support of the pitch
 *   class by the notes around, and, with `modelWeight` > 0, the refined
 *   roll's onset value at each candidate pitch). With `modelWeight` 0 the
 *   denoiser is not run: at the size that trains on two CPU cores its roll did
 *   not tell planted wrong notes from right ones (README, "Diffusion
 *   refinement"), so the default judge does without it.
 * - `"none"`: the refined roll is the result. Original notes whose onset cell
 *   survives keep their exact timing and velocity; new notes get grid timing
 *   and the piece's mean velocity.
 * - `"remove-only"`: the model can only delete notes. An original note stays
 *   when its onset cell survives; nothing is added or moved.
 * - `"in-key"`: original notes in the local key are kept whatever the model
 *   says. Out-of-key notes are the suspects: each one stays if the model keeps
 *   it, moves if the model put an in-key note within 2 semitones and 1 step of
 *   it in its place (the moved note keeps the original timing and velocity),
 *   and is deleted otherwise. Other notes the model adds are ignored.
 * - `"consonant"`: as `"in-key"`, but an in-key note is a suspect
 *   too when it sounds together (on the grid) with another note a minor
 *   second, major seventh or tritone away, which catches wrong notes that
 *   land on another scale degree (E → F in C major).
 *
 * The local key of a segment is the Krumhansl–Schmuckler key
 * (`findKey`, `plugins/_music/theory.ts`) of the notes in that segment and its
 * neighbours, about 8 bars in all; a minor key also admits its raised 7th
 * (harmonic minor).
 * Empty segments are not refined (the model is never asked to fill silence).
 * Notes off the 88 keys pass through unchanged.
 *
 * Per piece, before and after: the dissonant-pair rate (share of pairs of
 * notes sounding together at a minor second, major seventh or tritone,
 * `dissonantPairRate`) and the out-of-key time rate (`outOfKeyTimeRate`),
 * the clash rate (share of notes sounding with a note a minor second or major
 * seventh away, `clashRate`), all from `plugins/_music/metrics.ts`, and the
 * share of original notes kept unchanged. They go to `ctx.metrics` (step = piece index) and to the
 * `metrics` output with their means.
 *
 * @module
 */

import { definePlugin, type Inputs, p, port } from "../../mod.ts";
import type { StageContext } from "../../mod.ts";
import type { RolloutPieces } from "../_music/artifacts.ts";
import { type MidiCorpus, type Note, type Piece, sortNotes } from "../_music/types.ts";
import { clashRate, dissonantPairRate, outOfKeyTimeRate } from "../_music/metrics.ts";
import { judgeNotes, type JudgeOptions } from "../_music/note_judge.ts";
import { beatGrid, findKey, isDissonantInterval, pitchClass } from "../_music/theory.ts";
import {
  type GridNote,
  gridNoteToNote,
  joinRoll,
  LOWEST_PITCH,
  matchRollNotes,
  meanVelocity,
  pieceToGridNotes,
  pieceToRoll,
  PITCH_COUNT,
  quantizeNote,
  rollToGridNotes,
  segmentSteps,
  splitRoll,
} from "../_music/pianoroll.ts";
import { refineRolls } from "../_tf/diffusion.ts";
import { type Denoiser } from "../_tf/denoiser.ts";

/** The `preserve` modes, see the module doc. */
export const PRESERVE_MODES = ["judge", "none", "remove-only", "in-key", "consonant"] as const;
/** What refinement may change. */
export type PreserveMode = typeof PRESERVE_MODES[number];

/** How far (semitones, grid steps) a suspect note may move. */
const MOVE_SEMITONES = 2;
const MOVE_STEPS = 1;
/** Bars of music the local key is found from (segment plus neighbours). */
const KEY_WINDOW_BARS = 8;
/** Seconds of music the judge finds the local key from, and the reach of pitch-class support. */
const JUDGE_KEY_WINDOW_SEC = 8;
const JUDGE_SUPPORT_WINDOW_SEC = 1;

/** Before/after figures of one refined piece. */
export interface RefineFigures {
  id: string;
  notesBefore: number;
  notesAfter: number;
  /** Original notes kept unchanged (exact pitch, timing, velocity) / original notes. */
  keptShare: number;
  /** Original notes deleted. */
  removed: number;
  /** Original notes moved to another pitch. */
  moved: number;
  /** Notes with no original (only in `"none"` mode). */
  added: number;
  clashBefore: number;
  clashAfter: number;
  dissonanceBefore: number;
  dissonanceAfter: number;
  outOfKeyBefore: number;
  outOfKeyAfter: number;
}

/**
 * Pitch-class sets of the local key of each segment: the key of the notes in
 * the segment and `radius` segments on each side, a minor key with its
 * raised 7th.
 *
 * @param notes The piece's grid notes.
 * @param options Steps per segment, number of segments, `radius` (default 1).
 * @returns One 12-entry mask per segment.
 */
export function localKeys(
  notes: readonly GridNote[],
  options: { segmentSteps: number; segments: number; radius?: number },
): boolean[][] {
  const bySegment: Note[][] = Array.from({ length: options.segments }, () => []);
  for (const n of notes) {
    const s = Math.min(options.segments - 1, Math.floor(n.onStep / options.segmentSteps));
    // findKey weights pitch classes by duration; steps stand in for seconds.
    bySegment[s].push({ pitch: n.pitch, startSec: n.onStep, endSec: n.endStep, velocity: 64 });
  }
  const radius = options.radius ?? 1;
  const out: boolean[][] = [];
  for (let s = 0; s < options.segments; s++) {
    const window = bySegment.slice(Math.max(0, s - radius), s + radius + 1).flat();
    const { scale } = findKey(window);
    const mask = [...scale.inScale];
    if (scale.mode === "minor") mask[(scale.tonic + 11) % 12] = true;
    out.push(mask);
  }
  return out;
}

/** Keys (`onStep * 128 + pitch`) of grid notes that sound with a sharp dissonance on the grid. */
function dissonantCells(notes: readonly GridNote[]): Set<number> {
  const out = new Set<number>();
  let active: GridNote[] = [];
  for (const n of notes) { // sorted by onStep
    active = active.filter((a) => a.endStep > n.onStep);
    for (const a of active) {
      if (isDissonantInterval(a.pitch, n.pitch)) {
        out.add(a.onStep * 128 + a.pitch);
        out.add(n.onStep * 128 + n.pitch);
      }
    }
    active.push(n);
  }
  return out;
}

/**
 * Builds the refined piece from the refined roll's notes, following `preserve`.
 *
 * @param piece The original piece.
 * @param refinedNotes Grid notes read from the refined roll.
 * @param options Grid resolution, segment length in steps and in bars, and the mode.
 * @returns The refined piece; how many original notes were kept unchanged
 *   (notes off the keyboard included), removed and moved; how many were added.
 */
export function applyPreserve(
  piece: Piece,
  refinedNotes: readonly GridNote[],
  options: { stepsPerBeat: number; segmentSteps: number; bars: number; preserve: PreserveMode },
): { piece: Piece; removed: number; moved: number; added: number; kept: number } {
  const { stepsPerBeat, preserve } = options;
  const match = matchRollNotes(piece, refinedNotes, stepsPerBeat);
  const beats = beatGrid(piece);
  if (preserve === "none" || preserve === "remove-only") {
    const velocity = meanVelocity(piece);
    const added = preserve === "none"
      ? match.added.map((g) => gridNoteToNote(beats, g, { stepsPerBeat, velocity }))
      : [];
    return {
      piece: { ...piece, notes: sortNotes([...match.kept, ...match.outside, ...added]) },
      removed: match.removed.length,
      moved: 0,
      added: added.length,
      kept: match.kept.length + match.outside.length,
    };
  }
  const grid = pieceToGridNotes(piece, stepsPerBeat);
  let last = 0;
  for (const g of grid) last = Math.max(last, g.onStep + 1);
  const segments = Math.max(1, Math.ceil(last / options.segmentSteps));
  // About 8 bars of context: enough notes for a stable key, short enough to follow modulations.
  const radius = Math.max(1, Math.round((KEY_WINDOW_BARS / options.bars - 1) / 2));
  const keys = localKeys(grid, { segmentSteps: options.segmentSteps, segments, radius });
  const keyAt = (onStep: number) =>
    keys[Math.min(segments - 1, Math.floor(onStep / options.segmentSteps))];
  const clashes = preserve === "consonant" ? dissonantCells(grid) : new Set<number>();
  const isSuspect = (note: Note) => {
    const g = quantizeNote(beats, note, stepsPerBeat);
    return !keyAt(g.onStep)[pitchClass(note.pitch)] || clashes.has(g.onStep * 128 + g.pitch);
  };
  const notes: Note[] = [...match.outside, ...match.kept];
  let kept = notes.length;
  // Protected notes the model dropped come back; suspects it dropped may move.
  const used = new Set<GridNote>();
  let removed = 0, moved = 0;
  for (const note of match.removed) {
    if (!isSuspect(note)) {
      notes.push(note);
      kept++;
      continue;
    }
    const g = quantizeNote(beats, note, stepsPerBeat);
    let best: GridNote | undefined;
    let bestCost = Infinity;
    for (const a of match.added) {
      const dp = Math.abs(a.pitch - g.pitch), ds = Math.abs(a.onStep - g.onStep);
      if (used.has(a) || dp === 0 || dp > MOVE_SEMITONES || ds > MOVE_STEPS) continue;
      if (!keyAt(g.onStep)[pitchClass(a.pitch)]) continue;
      const cost = dp * 10 + ds;
      if (cost < bestCost) {
        best = a;
        bestCost = cost;
      }
    }
    if (best) {
      used.add(best);
      notes.push({ ...note, pitch: best.pitch });
      moved++;
    } else {
      removed++;
    }
  }
  return { piece: { ...piece, notes: sortNotes(notes) }, removed, moved, added: 0, kept };
}

/** Input ports of `diffuse/pianoroll`. */
const refineInputs = {
  denoiser: port<Denoiser>({ type: "denoiser", description: "The trained denoiser" }),
  pieces: port<Piece[]>({ type: "pieces", description: "Pieces to refine", optional: true }),
  rollouts: port<RolloutPieces>({
    type: "rollouts",
    description: "Rollouts whose decoded pieces to refine",
    optional: true,
  }),
  corpus: port<MidiCorpus>({
    type: "midi-corpus",
    description: "A corpus whose pieces (all splits) to refine",
    optional: true,
  }),
};

/** What `diffuse/pianoroll` reads (see {@linkcode refinePieces}). */
export type RefineInputs = Inputs<typeof refineInputs>;

/** The pieces of the optional inputs, in order: `pieces`, `rollouts.pieces`, `corpus.pieces`. */
function collectPieces(inputs: RefineInputs): unknown[] {
  const out: unknown[] = [];
  const add = (value: unknown, port: string) => {
    if (value === undefined) return;
    if (!Array.isArray(value)) {
      throw new Error(`Cannot refine pieces: input "${port}" is not a list of pieces`);
    }
    out.push(...value);
  };
  add(inputs.pieces, "pieces");
  if (inputs.rollouts !== undefined) add(inputs.rollouts.pieces, "rollouts.pieces");
  if (inputs.corpus !== undefined) add(inputs.corpus.pieces, "corpus.pieces");
  return out;
}

/** Why a value is not a usable piece, or null when it is one. */
function pieceProblem(value: unknown): string | null {
  const piece = value as Piece;
  if (typeof piece !== "object" || piece === null) return "not an object";
  if (typeof piece.id !== "string") return `"id" is not a string`;
  if (!Array.isArray(piece.notes)) return `"notes" is not a list`;
  if (!Array.isArray(piece.beatsSec)) return `"beatsSec" is not a list`;
  for (const n of piece.notes) {
    if (
      !Number.isFinite(n?.pitch) || !Number.isFinite(n?.startSec) || !Number.isFinite(n?.endSec) ||
      !Number.isFinite(n?.velocity)
    ) return "a note lacks a finite pitch, startSec, endSec or velocity";
  }
  return null;
}

function finiteMean(values: number[]): number {
  const ok = values.filter(Number.isFinite);
  return ok.length > 0 ? ok.reduce((a, b) => a + b, 0) / ok.length : NaN;
}

export default definePlugin({
  name: "diffuse/pianoroll",
  kind: "diffuse",
  version: "1.1.0",
  description:
    "Refines pieces: judges each note (keep exactly, move, remove) or edits with a piano-roll denoiser (SDEdit + DDIM), keeping what `preserve` protects",
  params: {
    strength: p.number({
      default: 0.3,
      min: 0.001,
      max: 1,
      description: "Noise level of SDEdit: the share of the diffusion steps to noise to (0..1]",
    }),
    steps: p.integer({ default: 20, min: 1, description: "DDIM denoising steps" }),
    samples: p.integer({
      default: 1,
      min: 1,
      description:
        "Noise draws per segment; their refined rolls are averaged before thresholding (a soft vote)",
    }),
    preserve: p.string({
      default: "judge",
      enum: PRESERVE_MODES,
      description:
        'What may change: "judge" (each original note is kept exactly, moved with its timing and velocity, or removed, by the judge params below; nothing is added), "none" (anything the roll says), "remove-only" (delete notes), "in-key" (only out-of-key notes may go or move), "consonant" (also in-key notes in a minor second, major seventh or tritone)',
    }),
    keyWeight: p.number({
      default: 0.7,
      min: 0,
      description: "judge: cost of a pitch class outside the local key (8 s around the note)",
    }),
    clashWeight: p.number({
      default: 1,
      min: 0,
      description:
        "judge: cost of a minor-second/major-seventh clash, times the share of the shorter note the two overlap",
    }),
    supportWeight: p.number({
      default: 0.5,
      min: 0,
      description:
        "judge: cost of a pitch class that no note within 1 s of the onset has (falls as such notes sound longer)",
    }),
    modelWeight: p.number({
      default: 0,
      min: 0,
      description:
        "judge: weight of the denoiser's evidence, 1 - the refined roll's onset value at the pitch; 0 = the denoiser is not run",
    }),
    moveCost: p.number({
      default: 1.3,
      min: 0,
      description: "judge: cost of moving a note, per semitone (higher: fewer edits)",
    }),
    removeCost: p.number({
      default: 2.6,
      min: 0,
      description: "judge: cost of removing a note (higher: fewer removals)",
    }),
    maxMoveSemitones: p.integer({
      default: 1,
      min: 0,
      max: 12,
      description: "judge: farthest a note may move, in semitones; 0 = keep or remove only",
    }),
    threshold: p.number({
      default: 0.5,
      min: 0.01,
      max: 0.99,
      description: "A refined cell is on when its value in [0, 1] is above this",
    }),
    batchSize: p.integer({ default: 32, min: 1, description: "Roll segments per denoiser call" }),
  },
  inputs: refineInputs,
  outputs: {
    pieces: { type: "pieces", description: "The refined pieces, same ids and order" },
    metrics: {
      type: "metrics",
      description: "Per-piece dissonance, out-of-key time and kept-note share, before and after",
    },
  },
  run(ctx, inputs, params) {
    // A promise that rejects, also for bad inputs found before any work.
    return Promise.resolve().then(() => refinePieces(ctx, inputs, params));
  },
});

/** Params of `diffuse/pianoroll` (see its schema). */
export interface RefineParams
  extends Omit<JudgeOptions, "keyWindowSec" | "supportWindowSec" | "evidence"> {
  strength: number;
  steps: number;
  samples: number;
  preserve: string;
  threshold: number;
  batchSize: number;
}

/** What `diffuse/pianoroll` returns. */
export type RefineOutputs = { pieces: Piece[]; metrics: unknown };

/**
 * The body of `diffuse/pianoroll` (see the module doc).
 *
 * @param ctx The stage context (rng for the noise, logs, metrics, progress).
 * @param inputs `denoiser` and at least one of `pieces`, `rollouts`, `corpus`.
 * @param params The plugin's params.
 * @returns The refined pieces and the before/after figures.
 * @throws {Error} When the denoiser or every piece input is missing.
 */
export function refinePieces(
  ctx: StageContext,
  inputs: RefineInputs,
  params: RefineParams,
): RefineOutputs {
  const denoiser = inputs.denoiser;
  if (!denoiser?.config || !denoiser.params) {
    throw new Error(`Cannot refine pieces: input "denoiser" is missing or not a denoiser`);
  }
  if (inputs.pieces === undefined && inputs.rollouts === undefined && inputs.corpus === undefined) {
    throw new Error(
      `Cannot refine pieces: connect at least one of the inputs "pieces", "rollouts" or "corpus"`,
    );
  }
  const { bars, stepsPerBeat } = denoiser.config;
  const preserve = params.preserve as PreserveMode;

  const pieces: Piece[] = [];
  for (const [i, value] of collectPieces(inputs).entries()) {
    const problem = pieceProblem(value);
    if (problem) {
      const id = (value as Piece)?.id;
      ctx.log.warn(`Skipping piece ${typeof id === "string" ? `"${id}"` : `#${i}`}: ${problem}`);
      continue;
    }
    const { split: _split, ...piece } = value as Piece & { split?: string };
    pieces.push(piece);
  }

  // With the judge and no model weight the denoiser has nothing to say: do not run it.
  const useModel = preserve !== "judge" || params.modelWeight > 0;
  // Cut every piece into segments; segments of one length go through the model together.
  const segmentsOf: Float32Array[][] = [];
  const byLength = new Map<number, Array<{ piece: number; index: number }>>();
  pieces.forEach((piece, i) => {
    if (!useModel) return;
    const steps = segmentSteps(piece, { bars, stepsPerBeat });
    const roll = pieceToRoll(piece, { stepsPerBeat, multipleOf: steps });
    const segments = splitRoll(roll, steps);
    segmentsOf.push(segments);
    segments.forEach((seg, index) => {
      if (!seg.some((v) => v > 0)) return; // silence stays silence
      if (!byLength.has(steps)) byLength.set(steps, []);
      byLength.get(steps)!.push({ piece: i, index });
    });
  });
  let total = 0, done = 0;
  for (const list of byLength.values()) total += list.length * params.samples;
  for (const list of [...byLength.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1])) {
    if (ctx.signal.aborted) throw new Error("Cannot finish refining: the run was aborted");
    const refined = refineRolls(denoiser, list.map((r) => segmentsOf[r.piece][r.index]), {
      strength: params.strength,
      steps: params.steps,
      samples: params.samples,
      rng: ctx.rng,
      batchSize: params.batchSize,
      onBatch: (n) => ctx.progress({ done: done + n, total, unit: "segment samples" }),
    });
    list.forEach((r, k) => (segmentsOf[r.piece][r.index] = refined[k]));
    done += list.length * params.samples;
  }

  const out: Piece[] = [];
  const figures: RefineFigures[] = [];
  pieces.forEach((piece, i) => {
    const steps = segmentSteps(piece, { bars, stepsPerBeat });
    const roll = useModel ? joinRoll(segmentsOf[i], stepsPerBeat) : undefined;
    let result: { piece: Piece; removed: number; moved: number; added: number; kept: number };
    if (preserve === "judge") {
      const beats = beatGrid(piece);
      const evidence = roll === undefined ? undefined : (index: number, pitch: number) => {
        const onStep = quantizeNote(beats, piece.notes[index], stepsPerBeat).onStep;
        const key = pitch - LOWEST_PITCH;
        if (onStep < 0 || onStep >= roll.steps || key < 0 || key >= PITCH_COUNT) return 0;
        return roll.data[(onStep * PITCH_COUNT + key) * 2];
      };
      const judged = judgeNotes(piece, {
        keyWeight: params.keyWeight,
        clashWeight: params.clashWeight,
        supportWeight: params.supportWeight,
        modelWeight: params.modelWeight,
        moveCost: params.moveCost,
        removeCost: params.removeCost,
        maxMoveSemitones: params.maxMoveSemitones,
        keyWindowSec: JUDGE_KEY_WINDOW_SEC,
        supportWindowSec: JUDGE_SUPPORT_WINDOW_SEC,
        evidence,
      });
      result = { piece: { ...piece, notes: judged.notes }, ...judged, added: 0 };
    } else {
      const refinedNotes = rollToGridNotes(roll!.data, { threshold: params.threshold });
      result = applyPreserve(piece, refinedNotes, {
        stepsPerBeat,
        segmentSteps: steps,
        bars,
        preserve,
      });
    }
    out.push(result.piece);
    const f: RefineFigures = {
      id: piece.id,
      notesBefore: piece.notes.length,
      notesAfter: result.piece.notes.length,
      keptShare: piece.notes.length > 0 ? result.kept / piece.notes.length : NaN,
      removed: result.removed,
      moved: result.moved,
      added: result.added,
      clashBefore: clashRate(piece),
      clashAfter: clashRate(result.piece),
      dissonanceBefore: dissonantPairRate(piece),
      dissonanceAfter: dissonantPairRate(result.piece),
      outOfKeyBefore: outOfKeyTimeRate(piece),
      outOfKeyAfter: outOfKeyTimeRate(result.piece),
    };
    figures.push(f);
    const values: Record<string, number> = {
      "clash/before": f.clashBefore,
      "clash/after": f.clashAfter,
      "dissonance/before": f.dissonanceBefore,
      "dissonance/after": f.dissonanceAfter,
      "outOfKey/before": f.outOfKeyBefore,
      "outOfKey/after": f.outOfKeyAfter,
      "notes/keptShare": f.keptShare,
    };
    ctx.metrics(
      i,
      Object.fromEntries(Object.entries(values).filter(([, v]) => Number.isFinite(v))),
    );
  });
  const mean = {
    keptShare: finiteMean(figures.map((f) => f.keptShare)),
    clashBefore: finiteMean(figures.map((f) => f.clashBefore)),
    clashAfter: finiteMean(figures.map((f) => f.clashAfter)),
    dissonanceBefore: finiteMean(figures.map((f) => f.dissonanceBefore)),
    dissonanceAfter: finiteMean(figures.map((f) => f.dissonanceAfter)),
    outOfKeyBefore: finiteMean(figures.map((f) => f.outOfKeyBefore)),
    outOfKeyAfter: finiteMean(figures.map((f) => f.outOfKeyAfter)),
  };
  ctx.log.info(
    `Refined ${out.length} pieces (${preserve}${
      useModel ? `, strength ${params.strength}` : ""
    }): clashes ${mean.clashBefore.toFixed(4)} -> ${mean.clashAfter.toFixed(4)}, dissonance ${
      mean.dissonanceBefore.toFixed(4)
    } -> ${mean.dissonanceAfter.toFixed(4)}, out-of-key time ${mean.outOfKeyBefore.toFixed(4)} -> ${
      mean.outOfKeyAfter.toFixed(4)
    }, notes kept ${(100 * mean.keptShare).toFixed(1)}%`,
  );
  return {
    pieces: out,
    metrics: { plugin: "diffuse/pianoroll", params, mean, pieces: figures },
  };
}
