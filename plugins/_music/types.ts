/**
 * Musical data types shared by every music plugin. Times are in seconds unless
 * a name says otherwise (units in names: `startSec`, `stepsPerBeat`).
 */

/** One sounding note. `endSec > startSec` always holds for notes a reader returns. */
export interface Note {
  /** MIDI pitch 0..127. */
  pitch: number;
  startSec: number;
  endSec: number;
  /** MIDI velocity 1..127. */
  velocity: number;
}

/**
 * Sorts notes in place into the order `Piece.notes` promises: by `startSec`,
 * then `pitch`.
 *
 * @param notes The notes.
 * @returns The same array, sorted.
 */
export function sortNotes(notes: Note[]): Note[] {
  return notes.sort((a, b) => a.startSec - b.startSec || a.pitch - b.pitch);
}

/** A piece of music: notes sorted by (startSec, pitch) plus its beat grid. */
export interface Piece {
  /** Stable identifier, usually the file name without extension. */
  id: string;
  notes: Note[];
  /** Quarter-note tempo in beats per minute at the start of the piece. */
  tempoBpm: number;
  /** Time signature numerator (beats per bar), e.g. 4 for 4/4. */
  beatsPerBar: number;
  /**
   * Onset time of every beat in seconds, covering the whole piece; derived from
   * the tempo map when the source has one, otherwise from `tempoBpm`.
   */
  beatsSec: number[];
  /** Where it came from (file path) when it came from a file. */
  source?: string;
}

/** Which split a piece belongs to. */
export type Split = "train" | "validation" | "test";

/** A set of pieces with their split, as loaders produce them. */
export interface MidiCorpus {
  pieces: Array<Piece & { split: Split }>;
  /** Files that could not be read, with a one-line reason each. */
  skipped: Array<{ file: string; reason: string }>;
}
