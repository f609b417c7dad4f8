/**
 * Degenerate pieces that a reward must not prefer to real music: the kinds a
 * policy finds when it games a reward (one voice, one velocity, loops, drones)
 * and noise. Used by the reward sanity test and `bench/score_table.ts`.
 *
 * @module
 */

import type { Rng } from "../mod.ts";
import type { Note, Piece } from "../plugins/_music/types.ts";

/** The kinds of degenerate piece. */
export const DEGENERATE_KINDS = [
  "scale-walk",
  "arpeggio-loop",
  "repeated-note",
  "chord-drone",
  "random-notes",
  "clusters",
] as const;

/** One of {@linkcode DEGENERATE_KINDS}. */
export type DegenerateKind = typeof DEGENERATE_KINDS[number];

const C_MAJOR = [0, 2, 4, 5, 7, 9, 11];

function piece(id: string, notes: Note[], durationSec: number): Piece {
  const beats = Math.ceil(durationSec / 0.5) + 1;
  return {
    id,
    notes: notes.filter((n) => n.startSec < durationSec)
      .sort((a, b) => a.startSec - b.startSec || a.pitch - b.pitch),
    tempoBpm: 120,
    beatsPerBar: 4,
    beatsSec: Array.from({ length: beats }, (_, i) => i * 0.5),
  };
}

/** A run of eighth notes (0.25 s at 120 bpm) at one velocity. */
function eighths(pitches: (i: number) => number, durationSec: number, velocity = 80): Note[] {
  const notes: Note[] = [];
  for (let i = 0; i * 0.25 < durationSec; i++) {
    notes.push({ pitch: pitches(i), startSec: i * 0.25, endSec: i * 0.25 + 0.25, velocity });
  }
  return notes;
}

/**
 * One degenerate piece.
 *
 * - `scale-walk`: one voice walking up and down two octaves of C major in
 *   eighths at one velocity;
 * - `arpeggio-loop`: C-E-G-E over and over in eighths at one velocity;
 * - `repeated-note`: one pitch in eighths;
 * - `chord-drone`: a C-major triad struck every beat at one velocity;
 * - `random-notes`: pitches 36..96, onsets, lengths and velocities at random;
 * - `clusters`: chords of three to five adjacent semitones at random pitches.
 *
 * @param kind Which kind.
 * @param options `rng`, `durationSec` and `id`.
 * @returns The piece.
 */
export function degeneratePiece(
  kind: DegenerateKind,
  options: { rng: Rng; durationSec: number; id: string },
): Piece {
  const { rng, durationSec, id } = options;
  const transpose = rng.int(12) - 6;
  switch (kind) {
    case "scale-walk": {
      const steps = 14;
      return piece(
        id,
        eighths((i) => {
          const k = i % (2 * steps);
          const degree = k <= steps ? k : 2 * steps - k;
          return 60 + transpose + 12 * Math.floor(degree / 7) + C_MAJOR[degree % 7];
        }, durationSec),
        durationSec,
      );
    }
    case "arpeggio-loop":
      return piece(
        id,
        eighths((i) => 60 + transpose + [0, 4, 7, 4][i % 4], durationSec),
        durationSec,
      );
    case "repeated-note":
      return piece(id, eighths(() => 67 + transpose, durationSec), durationSec);
    case "chord-drone": {
      const notes: Note[] = [];
      for (let t = 0; t < durationSec; t += 0.5) {
        for (const step of [0, 4, 7]) {
          notes.push({ pitch: 60 + transpose + step, startSec: t, endSec: t + 0.5, velocity: 80 });
        }
      }
      return piece(id, notes, durationSec);
    }
    case "random-notes": {
      const notes: Note[] = [];
      let t = 0;
      while (t < durationSec) {
        const lengthSec = 0.05 + rng.next() * 0.8;
        notes.push({
          pitch: 36 + rng.int(61),
          startSec: t,
          endSec: t + lengthSec,
          velocity: 20 + rng.int(100),
        });
        t += -Math.log(1 - rng.next()) * 0.12;
      }
      return piece(id, notes, durationSec);
    }
    case "clusters": {
      const notes: Note[] = [];
      for (let t = 0; t < durationSec; t += 0.25 + rng.next() * 0.5) {
        const low = 40 + rng.int(40);
        const size = 3 + rng.int(3);
        const velocity = 40 + rng.int(60);
        for (let k = 0; k < size; k++) {
          notes.push({ pitch: low + k, startSec: t, endSec: t + 0.4, velocity });
        }
      }
      return piece(id, notes, durationSec);
    }
  }
}
