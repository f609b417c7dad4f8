/**
 * Judges the notes of a piece one by one: each is kept exactly, moved to a
 * nearby pitch (its onset, duration and velocity unchanged) or removed,
 * whichever lowers a "wrong-note energy" of the piece by more than the edit
 * costs. No note is ever added, so refinement edits only what it must.
 *
 * The energy of a note at pitch q is the sum of
 *
 * - `keyWeight` when q's pitch class is outside the local key (the
 *   Krumhansl–Schmuckler key of the notes within `keyWindowSec` around it; a
 *   minor key also admits its raised 7th);
 * - `clashWeight` for each note sounding with it a minor second or major
 *   seventh away (any octave), weighted by how much of the shorter note the
 *   overlap covers, so a legato overlap of a few milliseconds counts little
 *   and a struck simultaneity fully;
 * - `supportWeight · exp(−S / 0.3 s)`, where S is how many seconds other notes
 *   of q's pitch class sound within `supportWindowSec` of its onset: a pitch
 *   class that nothing nearby confirms (no chord tone, no doubling, no
 *   repetition) is suspect, and a move towards a pitch class the music around
 *   it uses is preferred;
 * - `modelWeight · (1 − P)`, where P is the evidence of a learned model (the
 *   refined roll's onset value at q), when one is given.
 *
 * Edits cost `moveCost` per semitone moved (at most `maxMoveSemitones`) and
 * `removeCost` per removed note. The search is greedy, in sweeps: every
 * unedited note's best edit is scored against the current piece, edits are
 * applied from the largest gain down (skipping one that sounds with, or
 * starts within `supportWindowSec` of, a note already edited in this sweep,
 * whose scores are then stale), and sweeps repeat until no edit gains.
 * Each note is edited at most once.
 *
 * Design notes: the terms are the cues a musician uses to spot a wrong note
 * (out of key, clashing with what sounds with it, unsupported by the
 * harmony around it). Their weights were chosen on MAESTRO train-split
 * excerpts with planted wrong notes and checked on test-split and OpenMSX
 * pieces (README, "Diffusion refinement").
 *
 * @module
 */

import { findKey, forEachOverlappingPair, intervalClass, pitchClass } from "./theory.ts";
import { type Note, type Piece, sortNotes } from "./types.ts";

/** Lowest and highest MIDI pitch a note may be moved to (the 88 piano keys). */
const LOWEST = 21, HIGHEST = 108;
/** Seconds of support at which the support cost has fallen to 1/e. */
const SUPPORT_SCALE_SEC = 0.3;
/** Sweeps of the greedy search at most (each edits a note at most once, so it ends anyway). */
const MAX_SWEEPS = 50;

/** Weights and costs of {@linkcode judgeNotes}. */
export interface JudgeOptions {
  /** Cost of a pitch class outside the local key. */
  keyWeight: number;
  /** Cost of a minor-second/major-seventh clash, times the overlap's share of the shorter note. */
  clashWeight: number;
  /** Cost of a pitch class no note around confirms (see the module doc). */
  supportWeight: number;
  /** Weight of a model's evidence against a pitch, `1 - evidence(i, q)`. */
  modelWeight: number;
  /** Cost of moving a note, per semitone. */
  moveCost: number;
  /** Cost of removing a note. */
  removeCost: number;
  /** Farthest a note may move, in semitones (0: only keep or remove). */
  maxMoveSemitones: number;
  /** Length of the window the local key is found in, in seconds. */
  keyWindowSec: number;
  /** How far around a note's onset other notes support its pitch class, in seconds. */
  supportWindowSec: number;
  /** A model's evidence in [0, 1] for note `index` (of `piece.notes`) sounding at `pitch`. */
  evidence?: (index: number, pitch: number) => number;
}

/** What {@linkcode judgeNotes} did to each note of the piece. */
export type NoteDecision = "kept" | "moved" | "removed";

/** The judged piece and the decision per original note. */
export interface JudgeResult {
  /** The notes that remain, sorted by (startSec, pitch): originals, or originals with a new pitch. */
  notes: Note[];
  /** One decision per note of the input piece, in its order. */
  decisions: NoteDecision[];
  kept: number;
  moved: number;
  removed: number;
}

/**
 * Pitch-class masks of the local key around times `0, hop, 2·hop, ...`:
 * the key of the notes sounding within `windowSec / 2` of each time.
 */
function localKeyMasks(notes: readonly Note[], windowSec: number): {
  hopSec: number;
  masks: boolean[][];
} {
  const hopSec = windowSec / 4;
  let end = 0;
  for (const n of notes) end = Math.max(end, n.endSec);
  const masks: boolean[][] = [];
  const byStart = [...notes].sort((a, b) => a.startSec - b.startSec);
  let longest = 0;
  for (const n of notes) longest = Math.max(longest, n.endSec - n.startSec);
  let from = 0;
  for (let k = 0; k * hopSec <= end; k++) {
    const t = k * hopSec;
    const lo = t - windowSec / 2, hi = t + windowSec / 2;
    while (from < byStart.length && byStart[from].startSec < lo - longest) from++;
    const window: Note[] = [];
    for (let j = from; j < byStart.length && byStart[j].startSec < hi; j++) {
      if (byStart[j].endSec > lo) window.push(byStart[j]);
    }
    const { scale } = findKey(window.length > 0 ? window : notes);
    const mask = [...scale.inScale];
    if (scale.mode === "minor") mask[(scale.tonic + 11) % 12] = true;
    masks.push(mask);
  }
  return { hopSec, masks };
}

/**
 * Judges every note of a piece (see the module doc): keeps it exactly, moves
 * it to another pitch with its timing and velocity, or removes it.
 *
 * @param piece The piece; its notes are not modified.
 * @param options Weights, costs and windows.
 * @returns The remaining notes and what happened to each original note.
 * @example
 * ```ts
 * import { judgeNotes } from "./note_judge.ts";
 * // A C major chord held for two seconds, with an F# struck inside it.
 * const note = (pitch: number, startSec: number) => ({ pitch, startSec, endSec: startSec + 2, velocity: 70 });
 * const piece = {
 *   id: "c", tempoBpm: 120, beatsPerBar: 4, beatsSec: [0, 0.5, 1, 1.5],
 *   notes: [48, 52, 55, 60, 64, 67, 72].map((p) => note(p, 0)).concat([note(66, 0), note(60, 2), note(64, 2), note(67, 2)]),
 * };
 * const result = judgeNotes(piece, {
 *   keyWeight: 1, clashWeight: 1, supportWeight: 0.5, modelWeight: 0, moveCost: 1.2,
 *   removeCost: 2.4, maxMoveSemitones: 1, keyWindowSec: 8, supportWindowSec: 1,
 * });
 * console.assert(result.decisions[7] !== "kept" && result.kept === 10);
 * ```
 */
export function judgeNotes(piece: Piece, options: JudgeOptions): JudgeResult {
  const notes = piece.notes;
  const n = notes.length;
  const pitch = notes.map((note) => note.pitch);
  const alive = new Array<boolean>(n).fill(true);
  const edited = new Array<boolean>(n).fill(false);
  const onKeyboard = notes.map((note) => note.pitch >= LOWEST && note.pitch <= HIGHEST);

  const keys = localKeyMasks(notes, options.keyWindowSec);
  const keyMask = (i: number) =>
    keys
      .masks[
        Math.min(keys.masks.length - 1, Math.max(0, Math.round(notes[i].startSec / keys.hopSec)))
      ];

  // Clash partners: every note sounding with i, and the share of the shorter note they overlap.
  const index = new Map<Note, number>();
  notes.forEach((note, i) => index.set(note, i));
  const partners: Array<Array<{ j: number; weight: number }>> = notes.map(() => []);
  forEachOverlappingPair(notes, (a, b, overlapSec) => {
    const i = index.get(a)!, j = index.get(b)!;
    const shorter = Math.min(a.endSec - a.startSec, b.endSec - b.startSec);
    const weight = Math.min(1, overlapSec / Math.max(1e-6, shorter));
    partners[i].push({ j, weight });
    partners[j].push({ j: i, weight });
  });

  // Notes in onset order, for the support window.
  const order = notes.map((_, i) => i).sort((a, b) => notes[a].startSec - notes[b].startSec);
  const rank = new Array<number>(n);
  order.forEach((i, r) => (rank[i] = r));
  let longest = 0;
  for (const note of notes) longest = Math.max(longest, note.endSec - note.startSec);
  const supportSec = (i: number, pc: number): number => {
    const w = options.supportWindowSec;
    const lo = notes[i].startSec - w, hi = notes[i].startSec + w;
    let total = 0;
    const visit = (j: number) => {
      if (j === i || !alive[j] || pitchClass(pitch[j]) !== pc) return;
      const overlap = Math.min(notes[j].endSec, hi) - Math.max(notes[j].startSec, lo);
      if (overlap > 0) total += overlap;
    };
    for (let r = rank[i] - 1; r >= 0 && notes[order[r]].startSec > lo - longest; r--) {
      visit(order[r]);
    }
    for (let r = rank[i] + 1; r < n && notes[order[r]].startSec < hi; r++) visit(order[r]);
    return total;
  };

  /** Energy of note i if it sounded at pitch q, against the current piece. */
  const energy = (i: number, q: number): number => {
    const pc = pitchClass(q);
    let e = keyMask(i)[pc] ? 0 : options.keyWeight;
    if (options.supportWeight > 0) {
      e += options.supportWeight * Math.exp(-supportSec(i, pc) / SUPPORT_SCALE_SEC);
    }
    if (options.clashWeight > 0) {
      for (const { j, weight } of partners[i]) {
        if (alive[j] && intervalClass(q, pitch[j]) === 1) e += options.clashWeight * weight;
      }
    }
    if (options.modelWeight > 0 && options.evidence) {
      e += options.modelWeight * (1 - options.evidence(i, q));
    }
    return e;
  };

  for (let sweep = 0; sweep < MAX_SWEEPS; sweep++) {
    const proposals: Array<{ i: number; gain: number; to: number | null }> = [];
    for (let i = 0; i < n; i++) {
      if (!alive[i] || edited[i] || !onKeyboard[i]) continue;
      const current = energy(i, pitch[i]);
      if (current <= 0) continue;
      let best = { gain: current - options.removeCost, to: null as number | null };
      for (let d = -options.maxMoveSemitones; d <= options.maxMoveSemitones; d++) {
        const q = pitch[i] + d;
        if (d === 0 || q < LOWEST || q > HIGHEST) continue;
        const gain = current - energy(i, q) - options.moveCost * Math.abs(d);
        if (gain > best.gain) best = { gain, to: q };
      }
      if (best.gain > 0) proposals.push({ i, ...best });
    }
    if (proposals.length === 0) break;
    proposals.sort((a, b) => b.gain - a.gain || a.i - b.i);
    const editedNow: number[] = [];
    const interacts = (i: number, j: number) =>
      Math.abs(notes[i].startSec - notes[j].startSec) <= options.supportWindowSec ||
      (notes[i].startSec < notes[j].endSec && notes[j].startSec < notes[i].endSec);
    for (const { i, to } of proposals) {
      if (editedNow.some((j) => interacts(i, j))) continue;
      edited[i] = true;
      editedNow.push(i);
      if (to === null) alive[i] = false;
      else pitch[i] = to;
    }
  }

  const decisions: NoteDecision[] = notes.map((note, i) =>
    !alive[i] ? "removed" : pitch[i] !== note.pitch ? "moved" : "kept"
  );
  const out: Note[] = [];
  notes.forEach((note, i) => {
    if (decisions[i] === "kept") out.push(note);
    else if (decisions[i] === "moved") out.push({ ...note, pitch: pitch[i] });
  });
  sortNotes(out);
  return {
    notes: out,
    decisions,
    kept: decisions.filter((d) => d === "kept").length,
    moved: decisions.filter((d) => d === "moved").length,
    removed: decisions.filter((d) => d === "removed").length,
  };
}
