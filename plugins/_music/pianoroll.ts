/**
 * Piano rolls for diffusion models, as in Polyffusion (Min et al. 2023,
 * "Polyffusion: A Diffusion Model for Polyphonic Score Generation with
 * Internal and External Controls", ISMIR): two channels, onset and sustain,
 * over the 88 piano keys (MIDI 21..108) and a grid of `stepsPerBeat` steps per
 * beat of the piece's own beat grid (`Piece.beatsSec`).
 *
 * Layout: a roll of `steps` grid steps is a `Float32Array` of
 * `steps * 88 * 2` cells, index `(step * 88 + key) * 2 + channel`, i.e. the
 * NHWC tensor `[steps, 88, 2]` with channel 0 = onset, 1 = sustain. A note
 * covering steps `[onStep, endStep)` sets onset at `onStep` and sustain at
 * `onStep + 1 .. endStep - 1`.
 *
 * @module
 */

import { type BeatGrid, beatGrid } from "./theory.ts";
import { type Note, type Piece, sortNotes } from "./types.ts";

/** MIDI pitch of the lowest piano key (A0). */
export const LOWEST_PITCH = 21;
/** Number of piano keys: MIDI 21..108. */
export const PITCH_COUNT = 88;
/** Roll channels: onset and sustain. */
export const ROLL_CHANNELS = 2;
/** Cells per grid step: 88 keys × 2 channels. */
export const CELLS_PER_STEP = PITCH_COUNT * ROLL_CHANNELS;

/** A note on the step grid: sounds over steps `[onStep, endStep)`. */
export interface GridNote {
  pitch: number;
  onStep: number;
  endStep: number;
}

/** A piano roll of a whole piece (see the module doc for the layout). */
export interface PianoRoll {
  steps: number;
  stepsPerBeat: number;
  /** `[steps, 88, 2]`, values 0..1 (1 = on). */
  data: Float32Array;
}

/**
 * Maps a time to a fractional grid step on a piece's beat grid
 * ({@linkcode beatGrid}: linear between beats, the first/last beat interval
 * beyond the ends, repeated or out-of-order beats dropped; `tempoBpm` when the
 * piece has fewer than two beats). Build the grid once per piece.
 *
 * @param grid The piece's `beatGrid(piece)`.
 * @param sec A time in seconds.
 * @param stepsPerBeat Grid resolution.
 * @returns The step, not rounded.
 * @example
 * ```ts
 * import { secToStep } from "./pianoroll.ts";
 * import { beatGrid } from "./theory.ts";
 * const piece = { id: "a", notes: [], tempoBpm: 120, beatsPerBar: 4, beatsSec: [0, 0.5, 1] };
 * console.assert(secToStep(beatGrid(piece), 0.75, 4) === 6);
 * ```
 */
export function secToStep(grid: BeatGrid, sec: number, stepsPerBeat: number): number {
  return grid.position(sec) * stepsPerBeat;
}

/**
 * Maps a grid step back to seconds (inverse of {@linkcode secToStep}).
 *
 * @param grid The piece's `beatGrid(piece)`.
 * @param step A (possibly fractional) grid step.
 * @param stepsPerBeat Grid resolution.
 * @returns The time in seconds.
 */
export function stepToSec(grid: BeatGrid, step: number, stepsPerBeat: number): number {
  return grid.time(step / stepsPerBeat);
}

/**
 * Number of grid steps in a segment of `bars` bars of the piece's metre.
 *
 * @param piece Gives `beatsPerBar` (4 when missing or invalid).
 * @param options `bars` per segment and `stepsPerBeat`.
 * @returns `bars * beatsPerBar * stepsPerBeat`, e.g. 32 for 2 bars of 4/4 at 4 steps per beat.
 */
export function segmentSteps(
  piece: Piece,
  options: { bars: number; stepsPerBeat: number },
): number {
  const beatsPerBar = piece.beatsPerBar > 0 ? piece.beatsPerBar : 4;
  return options.bars * beatsPerBar * options.stepsPerBeat;
}

/** True when a MIDI pitch is one of the 88 piano keys a roll can hold. */
export function inRollRange(pitch: number): boolean {
  return pitch >= LOWEST_PITCH && pitch < LOWEST_PITCH + PITCH_COUNT;
}

/**
 * Quantises one note to the grid: onset rounded to the nearest step, end
 * rounded too but at least one step after the onset.
 *
 * @param grid The beat grid of the note's piece (`beatGrid(piece)`).
 * @param note The note.
 * @param stepsPerBeat Grid resolution.
 * @returns The grid note (the pitch is not range-checked).
 */
export function quantizeNote(grid: BeatGrid, note: Note, stepsPerBeat: number): GridNote {
  const onStep = Math.round(secToStep(grid, note.startSec, stepsPerBeat));
  const endStep = Math.max(onStep + 1, Math.round(secToStep(grid, note.endSec, stepsPerBeat)));
  return { pitch: note.pitch, onStep, endStep };
}

/**
 * Quantises a piece's notes to grid notes, keeping those on the 88 keys and at
 * steps >= 0, sorted by (onStep, pitch).
 *
 * @param piece The piece.
 * @param stepsPerBeat Grid resolution.
 * @returns Grid notes; notes off the keyboard or before step 0 are left out.
 */
export function pieceToGridNotes(piece: Piece, stepsPerBeat: number): GridNote[] {
  const out: GridNote[] = [];
  const grid = beatGrid(piece);
  for (const note of piece.notes) {
    if (!inRollRange(note.pitch)) continue;
    const g = quantizeNote(grid, note, stepsPerBeat);
    if (g.onStep < 0) continue;
    out.push(g);
  }
  out.sort((a, b) => a.onStep - b.onStep || a.pitch - b.pitch);
  return out;
}

/**
 * Draws grid notes into a roll `[steps, 88, 2]` (channel-last, see the module
 * doc) starting at `fromStep`: a note that started before the window shows
 * as sustain only. Notes off the keyboard are skipped.
 *
 * @param notes Grid notes (any order).
 * @param options `steps` of the window, its first step `fromStep` (default 0)
 *   and a pitch `transpose` in semitones (default 0).
 * @returns The roll's cells.
 */
export function drawGridNotes(
  notes: readonly GridNote[],
  options: { steps: number; fromStep?: number; transpose?: number },
): Float32Array {
  const { steps } = options;
  const from = options.fromStep ?? 0;
  const shift = options.transpose ?? 0;
  const data = new Float32Array(steps * CELLS_PER_STEP);
  for (const n of notes) {
    const key = n.pitch + shift - LOWEST_PITCH;
    if (key < 0 || key >= PITCH_COUNT) continue;
    const on = n.onStep - from;
    const end = Math.min(n.endStep - from, steps);
    if (on >= steps || end <= 0) continue;
    if (on >= 0) data[(on * PITCH_COUNT + key) * 2] = 1;
    for (let s = Math.max(on + 1, 0); s < end; s++) data[(s * PITCH_COUNT + key) * 2 + 1] = 1;
  }
  return data;
}

/**
 * Makes the piano roll of a whole piece. Its length is the last note end,
 * rounded up to a whole number of `multipleOf` steps.
 *
 * @param piece The piece.
 * @param options `stepsPerBeat`, and `multipleOf` (default 1) to pad the roll
 *   to whole segments.
 * @returns The roll.
 * @example
 * ```ts
 * import { pieceToRoll } from "./pianoroll.ts";
 * const piece = {
 *   id: "c", tempoBpm: 120, beatsPerBar: 4, beatsSec: [0, 0.5, 1, 1.5],
 *   notes: [{ pitch: 60, startSec: 0, endSec: 0.5, velocity: 80 }],
 * };
 * const roll = pieceToRoll(piece, { stepsPerBeat: 4, multipleOf: 16 });
 * console.assert(roll.steps === 16 && roll.data[(0 * 88 + 39) * 2] === 1);
 * ```
 */
export function pieceToRoll(
  piece: Piece,
  options: { stepsPerBeat: number; multipleOf?: number },
): PianoRoll {
  const notes = pieceToGridNotes(piece, options.stepsPerBeat);
  const multiple = Math.max(1, options.multipleOf ?? 1);
  let last = 0;
  for (const n of notes) last = Math.max(last, n.endStep);
  const steps = Math.max(multiple, Math.ceil(last / multiple) * multiple);
  return {
    steps,
    stepsPerBeat: options.stepsPerBeat,
    data: drawGridNotes(notes, { steps }),
  };
}

/**
 * Reads grid notes back from roll cells: an onset cell above `threshold`
 * starts a note, which lasts through the following sustain cells above
 * `threshold` and stops at the next onset of the same key or the first cell
 * without sustain. A sustain with no onset before it starts nothing.
 *
 * @param data Roll cells `[steps, 88, 2]`.
 * @param options `threshold` (default 0.5): a cell is on when its value is above it.
 * @returns Grid notes sorted by (onStep, pitch).
 */
export function rollToGridNotes(
  data: Float32Array,
  options: { threshold?: number } = {},
): GridNote[] {
  const threshold = options.threshold ?? 0.5;
  const steps = Math.floor(data.length / CELLS_PER_STEP);
  const out: GridNote[] = [];
  for (let key = 0; key < PITCH_COUNT; key++) {
    let s = 0;
    while (s < steps) {
      if (data[(s * PITCH_COUNT + key) * 2] > threshold) {
        let end = s + 1;
        while (
          end < steps &&
          data[(end * PITCH_COUNT + key) * 2] <= threshold &&
          data[(end * PITCH_COUNT + key) * 2 + 1] > threshold
        ) end++;
        out.push({ pitch: key + LOWEST_PITCH, onStep: s, endStep: end });
        s = end;
      } else {
        s++;
      }
    }
  }
  out.sort((a, b) => a.onStep - b.onStep || a.pitch - b.pitch);
  return out;
}

/**
 * Splits roll cells into consecutive segments of `steps` steps; the last one
 * is padded with zeros.
 *
 * @param roll The whole roll.
 * @param steps Steps per segment (e.g. from {@linkcode segmentSteps}).
 * @returns Segments, each `[steps, 88, 2]`.
 */
export function splitRoll(roll: PianoRoll, steps: number): Float32Array[] {
  const size = steps * CELLS_PER_STEP;
  const out: Float32Array[] = [];
  for (let from = 0; from < roll.data.length; from += size) {
    const seg = new Float32Array(size);
    seg.set(roll.data.subarray(from, Math.min(from + size, roll.data.length)));
    out.push(seg);
  }
  return out;
}

/**
 * Joins segments made by {@linkcode splitRoll} back into one roll.
 *
 * @param segments Segments of equal length.
 * @param stepsPerBeat The grid resolution to record.
 * @returns The roll (its length is the sum of the segments').
 */
export function joinRoll(segments: readonly Float32Array[], stepsPerBeat: number): PianoRoll {
  let total = 0;
  for (const s of segments) total += s.length;
  const data = new Float32Array(total);
  let at = 0;
  for (const s of segments) {
    data.set(s, at);
    at += s.length;
  }
  return { steps: total / CELLS_PER_STEP, stepsPerBeat, data };
}

/** How the notes of a refined roll relate to the notes of the original piece. */
export interface RollMatch {
  /** Original notes whose (pitch, grid onset) is an onset of the roll. */
  kept: Note[];
  /** Original notes on the keyboard whose onset cell is gone. */
  removed: Note[];
  /** Roll notes with no original note at the same (pitch, grid onset). */
  added: GridNote[];
  /** Original notes the roll cannot hold (off the 88 keys or before the grid): left as they are. */
  outside: Note[];
}

/**
 * Matches roll notes to the original notes by pitch and grid onset step, so
 * that notes that survive refinement keep their exact timing and velocity.
 * Several original notes on one cell (a repeated note within one step) are
 * all kept when that cell survives.
 *
 * @param original The piece the roll was made from.
 * @param gridNotes Notes read from the (refined) roll.
 * @param stepsPerBeat The roll's grid resolution.
 * @returns Kept, removed, added and outside notes.
 */
export function matchRollNotes(
  original: Piece,
  gridNotes: readonly GridNote[],
  stepsPerBeat: number,
): RollMatch {
  const onsets = new Set<number>();
  for (const g of gridNotes) onsets.add(g.onStep * 128 + g.pitch);
  const originalCells = new Set<number>();
  const kept: Note[] = [], removed: Note[] = [], outside: Note[] = [];
  const grid = beatGrid(original);
  for (const note of original.notes) {
    const g = quantizeNote(grid, note, stepsPerBeat);
    if (!inRollRange(note.pitch) || g.onStep < 0) {
      outside.push(note);
      continue;
    }
    const cell = g.onStep * 128 + g.pitch;
    originalCells.add(cell);
    if (onsets.has(cell)) kept.push(note);
    else removed.push(note);
  }
  const added = gridNotes.filter((g) => !originalCells.has(g.onStep * 128 + g.pitch));
  return { kept, removed, added, outside };
}

/**
 * Turns a grid note into a note on the piece's time line.
 *
 * @param grid The beat grid of the piece it goes into (`beatGrid(piece)`).
 * @param g The grid note.
 * @param options `stepsPerBeat` and the `velocity` to give it.
 * @returns The note, with grid timing.
 */
export function gridNoteToNote(
  grid: BeatGrid,
  g: GridNote,
  options: { stepsPerBeat: number; velocity: number },
): Note {
  return {
    pitch: g.pitch,
    startSec: stepToSec(grid, g.onStep, options.stepsPerBeat),
    endSec: stepToSec(grid, g.endStep, options.stepsPerBeat),
    velocity: options.velocity,
  };
}

/** Mean velocity of a piece's notes, rounded, 64 for an empty piece. */
export function meanVelocity(piece: Piece): number {
  if (piece.notes.length === 0) return 64;
  let sum = 0;
  for (const n of piece.notes) sum += n.velocity;
  return Math.min(127, Math.max(1, Math.round(sum / piece.notes.length)));
}

/**
 * Turns a (refined) roll back into a piece: notes whose (pitch, grid onset)
 * match an original note are the original notes, with their exact timing and
 * velocity; new notes get grid timing and the piece's mean velocity; notes the
 * roll cannot hold (off the keyboard) are kept unchanged.
 *
 * @param roll The roll, e.g. refined by a diffusion model.
 * @param original The piece the roll came from (its id, grid and notes).
 * @param options `threshold` for reading cells (default 0.5).
 * @returns The new piece (same id and grid) and the match it was built from.
 * @example
 * ```ts
 * import { pieceToRoll, rollToPiece } from "./pianoroll.ts";
 * const piece = {
 *   id: "c", tempoBpm: 120, beatsPerBar: 4, beatsSec: [0, 0.5, 1, 1.5],
 *   notes: [{ pitch: 60, startSec: 0.01, endSec: 0.49, velocity: 80 }],
 * };
 * const back = rollToPiece(pieceToRoll(piece, { stepsPerBeat: 4 }), piece).piece;
 * console.assert(back.notes[0].startSec === 0.01 && back.notes[0].velocity === 80);
 * ```
 */
export function rollToPiece(
  roll: PianoRoll,
  original: Piece,
  options: { threshold?: number } = {},
): { piece: Piece; match: RollMatch } {
  const gridNotes = rollToGridNotes(roll.data, options);
  const match = matchRollNotes(original, gridNotes, roll.stepsPerBeat);
  const velocity = meanVelocity(original);
  const grid = beatGrid(original);
  const notes = [
    ...match.kept,
    ...match.outside,
    ...match.added.map((g) =>
      gridNoteToNote(grid, g, { stepsPerBeat: roll.stepsPerBeat, velocity })
    ),
  ];
  return { piece: { ...original, notes: sortNotes(notes) }, match };
}
