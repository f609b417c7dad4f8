/**
 * A seeded generator of small, well-formed piano pieces in common-practice
 * style, for tests, demos and pretraining without downloaded data.
 *
 * The rules follow textbook tonal harmony and melody writing (e.g. Aldwell &
 * Schachter, "Harmony and Voice Leading"; Caplin, "Classical Form"):
 *
 * - A key (any of 12 tonics, major or minor) and a metre (4/4 or 3/4).
 * - Four-bar phrases. Each phrase follows a diatonic progression template
 *   (I–vi–IV–V, I–ii–V–I, i–iv–V–i, i–VII–VI–V, ...). Inner phrases end on a
 *   half cadence (V) or an authentic cadence, the last phrase always on V–I.
 *   In minor, V is major (harmonic minor's raised 7th).
 * - A melody on an eighth-note grid: notes on beats are chord tones chosen near
 *   an arch-shaped phrase contour, off-beat notes move by step towards the next
 *   beat (passing and neighbour tones), the last note of a phrase lands on a
 *   cadence tone (the tonic for authentic cadences) and is held.
 * - An accompaniment pattern below the melody, fixed per piece: Alberti bass,
 *   broken chords, block chords, or (in 3/4) a waltz bass; the final bar is a
 *   held tonic chord.
 * - Velocities with a crescendo to each phrase's middle and a diminuendo to its
 *   cadence, a downbeat accent, the melody louder than the accompaniment.
 *
 * The melody sits at or above MIDI 63 and the accompaniment at or below 61,
 * so the two never sound the same pitch at once.
 *
 * @module
 */

import type { Rng } from "../../mod.ts";
import type { Note, Piece } from "../_music/types.ts";

/** Major or (natural/harmonic) minor. */
export type Mode = "major" | "minor";

/** The accompaniment patterns the generator writes. */
export type AccompanimentStyle = "alberti" | "broken" | "block" | "waltz";

/** Options of {@linkcode generateSyntheticPiece}. */
export interface SyntheticOptions {
  /** The piece's id. */
  id: string;
  /** Number of bars (>= 1). Default 8. */
  bars?: number;
  /** Lowest tempo in quarter-note beats per minute (integer tempos are drawn). Default 80. */
  tempoMinBpm?: number;
  /** Highest tempo in beats per minute. Default 132. */
  tempoMaxBpm?: number;
}

/** What the generator chose, for tests and for describing a piece. */
export interface SyntheticPieceInfo {
  /** Pitch class of the tonic, 0 = C .. 11 = B. */
  tonicPitchClass: number;
  mode: Mode;
  beatsPerBar: number;
  tempoBpm: number;
  /** Roman numerals, one array per bar (two chords in some cadence bars). */
  progression: string[][];
  /** Bars per phrase, in order. */
  phraseBars: number[];
  accompaniment: AccompanimentStyle;
}

/** A generated piece with its melody and accompaniment kept apart. */
export interface SyntheticPiece {
  /** Melody and accompaniment merged, sorted by (startSec, pitch). */
  piece: Piece;
  melody: Note[];
  accompaniment: Note[];
  info: SyntheticPieceInfo;
}

/** Semitones above the tonic of the seven scale degrees. */
const MAJOR_SCALE = [0, 2, 4, 5, 7, 9, 11];
const NATURAL_MINOR_SCALE = [0, 2, 3, 5, 7, 8, 10];
const HARMONIC_MINOR_SCALE = [0, 2, 3, 5, 7, 8, 11];

const MAJOR_NUMERALS = ["I", "ii", "iii", "IV", "V", "vi", "vii°"];
const MINOR_NUMERALS = ["i", "ii°", "III", "iv", "V", "VI", "VII"];

/**
 * Pitch classes that belong to a key: the major scale, or natural minor plus
 * the raised 7th of harmonic minor.
 *
 * @param tonicPitchClass 0 = C .. 11 = B.
 * @param mode Major or minor.
 * @returns The set of pitch classes 0..11 in the key.
 */
export function keyPitchClasses(tonicPitchClass: number, mode: Mode): Set<number> {
  const steps = mode === "major" ? MAJOR_SCALE : [...NATURAL_MINOR_SCALE, 11];
  return new Set(steps.map((s) => (tonicPitchClass + s) % 12));
}

/** A chord span of the progression, in beats from the start of the piece. */
interface ChordSpan {
  /** Scale degree of the root, 0 = tonic. */
  degree: number;
  startBeat: number;
  endBeat: number;
}

/** Progression templates: one array of root degrees per bar (degree 0 = tonic). */
const FOUR_BAR_TEMPLATES: Record<Mode, { authentic: number[][][]; half: number[][][] }> = {
  major: {
    authentic: [
      [[0], [5], [3, 4], [0]], // I vi IV-V I
      [[0], [3], [4], [0]], // I IV V I
      [[0], [1], [4], [0]], // I ii V I
      [[0], [5], [1, 4], [0]], // I vi ii-V I
      [[0], [3], [1, 4], [0]], // I IV ii-V I
      [[5], [1], [4], [0]], // vi ii V I
    ],
    half: [
      [[0], [5], [3], [4]], // I vi IV V
      [[0], [3], [0], [4]], // I IV I V
      [[0], [5], [1], [4]], // I vi ii V
      [[0], [3], [1], [4]], // I IV ii V
    ],
  },
  minor: {
    authentic: [
      [[0], [3], [4], [0]], // i iv V i
      [[0], [5], [3, 4], [0]], // i VI iv-V i
      [[0], [1], [4], [0]], // i ii° V i
      [[0], [5], [1, 4], [0]], // i VI ii°-V i
      [[0], [3], [1, 4], [0]], // i iv ii°-V i
    ],
    half: [
      [[0], [5], [3], [4]], // i VI iv V
      [[0], [3], [0], [4]], // i iv i V
      [[0], [6], [5], [4]], // i VII VI V (descending tetrachord)
    ],
  },
};

/** Pre-dominant and tonic-prolonging degrees used to fill phrases that are not four bars long. */
const FILL_DEGREES = [5, 3, 1, 0, 3];

function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[rng.int(items.length)];
}

/** Splits `bars` into phrase lengths: fours, with a last phrase of 1 to 5 bars. */
function phraseLengths(bars: number): number[] {
  const out: number[] = [];
  let left = bars;
  while (left > 0) {
    const take = left <= 5 ? left : 4;
    out.push(take);
    left -= take;
  }
  return out;
}

/** One phrase's chords per bar, ending in the requested cadence. */
function phraseProgression(rng: Rng, mode: Mode, bars: number, cadence: "authentic" | "half") {
  if (bars === 4) return structuredClone(pick(rng, FOUR_BAR_TEMPLATES[mode][cadence]));
  const out: number[][] = [];
  // Fill from the start with the tonic and then pre-dominants, never repeating a chord.
  for (let bar = 0; bar < bars; bar++) {
    if (bar === 0) out.push([0]);
    else {
      let degree = pick(rng, FILL_DEGREES);
      if (degree === out[bar - 1][0]) degree = 3;
      out.push([degree]);
    }
  }
  // The cadence overwrites the end: ... V I, or ... V.
  if (cadence === "authentic") {
    out[bars - 1] = [0];
    if (bars >= 2) out[bars - 2] = [4];
  } else {
    out[bars - 1] = [4];
  }
  return out;
}

/** Melody rhythms per bar in beats; each sums to the bar length. */
const RHYTHMS: Record<number, { inner: number[][]; cadence: number[][]; final: number[][] }> = {
  4: {
    inner: [
      [1, 1, 1, 1],
      [2, 1, 1],
      [1, 1, 2],
      [1, 0.5, 0.5, 1, 1],
      [0.5, 0.5, 1, 1, 1],
      [1.5, 0.5, 1, 1],
      [1, 1, 1, 0.5, 0.5],
      [0.5, 0.5, 0.5, 0.5, 1, 1],
      [1, 0.5, 0.5, 0.5, 0.5, 1],
    ],
    cadence: [[2, 2], [1, 1, 2], [4]],
    final: [[4]],
  },
  3: {
    inner: [
      [1, 1, 1],
      [2, 1],
      [1, 0.5, 0.5, 1],
      [0.5, 0.5, 1, 1],
      [1.5, 0.5, 1],
      [1, 1, 0.5, 0.5],
      [1, 0.5, 0.5, 0.5, 0.5],
    ],
    cadence: [[3], [1, 2]],
    final: [[3]],
  },
};

/**
 * Generates one piece. Every choice comes from `rng`, so the same generator
 * state gives the same piece.
 *
 * @param rng A seeded generator (a stage's `ctx.rng`); it is advanced.
 * @param options The id, bar count and tempo range.
 * @returns The piece with its melody, accompaniment and the choices made.
 * @throws {RangeError} When `bars` is below 1 or the tempo range is empty or not positive.
 * @example
 * ```ts
 * import { createRng } from "../../mod.ts";
 * import { generateSyntheticPiece } from "./_synthetic.ts";
 *
 * const { piece, info } = generateSyntheticPiece(createRng(1), { id: "demo", bars: 8 });
 * console.assert(piece.beatsSec.length === 8 * info.beatsPerBar);
 * ```
 */
export function generateSyntheticPiece(rng: Rng, options: SyntheticOptions): SyntheticPiece {
  const bars = options.bars ?? 8;
  const tempoMin = options.tempoMinBpm ?? 80;
  const tempoMax = options.tempoMaxBpm ?? 132;
  if (!Number.isInteger(bars) || bars < 1) {
    throw new RangeError(`Cannot generate a piece: "bars" must be an integer >= 1, got ${bars}`);
  }
  if (!(tempoMin > 0) || !(tempoMax >= tempoMin)) {
    throw new RangeError(
      `Cannot generate a piece: tempo range ${tempoMin}..${tempoMax} BPM is empty or not positive`,
    );
  }

  // --- Global choices.
  const tonicPitchClass = rng.int(12);
  const mode: Mode = rng.next() < 0.6 ? "major" : "minor";
  const beatsPerBar = rng.next() < 0.65 ? 4 : 3;
  const lowTempo = Math.ceil(tempoMin), highTempo = Math.floor(tempoMax);
  const tempoBpm = highTempo >= lowTempo ? lowTempo + rng.int(highTempo - lowTempo + 1) : tempoMin; // a range narrower than one integer: use its lower end as is
  const accompaniment: AccompanimentStyle = beatsPerBar === 3
    ? pick(rng, ["alberti", "broken", "waltz"] as const)
    : pick(rng, ["alberti", "broken", "block"] as const);
  const toSec = (beat: number) => (beat * 60) / tempoBpm;

  // --- Phrases and chords.
  const phraseBars = phraseLengths(bars);
  const chordsPerBar: number[][] = [];
  const cadences: ("authentic" | "half")[] = [];
  phraseBars.forEach((length, i) => {
    const last = i === phraseBars.length - 1;
    const cadence = last || rng.next() < 0.3 ? "authentic" : "half";
    cadences.push(cadence);
    chordsPerBar.push(...phraseProgression(rng, mode, length, cadence));
  });
  const spans: ChordSpan[] = [];
  chordsPerBar.forEach((chords, bar) => {
    const barStart = bar * beatsPerBar;
    if (chords.length === 1) {
      spans.push({ degree: chords[0], startBeat: barStart, endBeat: barStart + beatsPerBar });
    } else {
      // Two chords: halves in 4/4, 2 + 1 beats in 3/4.
      const split = 2;
      spans.push({ degree: chords[0], startBeat: barStart, endBeat: barStart + split });
      spans.push({
        degree: chords[1],
        startBeat: barStart + split,
        endBeat: barStart + beatsPerBar,
      });
    }
  });
  const chordAt = (beat: number): ChordSpan =>
    spans.find((s) => beat >= s.startBeat && beat < s.endBeat) ?? spans[spans.length - 1];

  // Scale degree (any integer, 0 = tonic, 7 = tonic an octave up) to semitones above the tonic.
  // In minor, the dominant and leading-tone chords take harmonic minor's raised 7th.
  const scaleFor = (chordDegree: number) =>
    mode === "major" ? MAJOR_SCALE : chordDegree === 4 ? HARMONIC_MINOR_SCALE : NATURAL_MINOR_SCALE;
  const semitones = (degree: number, chordDegree: number) => {
    const scale = scaleFor(chordDegree);
    const octave = Math.floor(degree / 7);
    return scale[degree - octave * 7] + 12 * octave;
  };

  // --- Melody. Home tonic in 67..78 (G4..F#5); degrees -2..7 keep it within 63..90.
  const melodyHome = 67 + ((tonicPitchClass - 7 + 12) % 12);
  const lowDegree = -2, highDegree = 7;
  const isChordTone = (degree: number, chordDegree: number) =>
    [0, 2, 4].includes((((degree - chordDegree) % 7) + 7) % 7);

  interface Slot {
    startBeat: number;
    lengthBeats: number;
    phrase: number;
    /** Position in the phrase, 0..1. */
    phraseFraction: number;
    endsPhrase: boolean;
  }
  const slots: Slot[] = [];
  let bar = 0;
  phraseBars.forEach((length, phrase) => {
    const phraseStart = bar * beatsPerBar;
    const phraseLength = length * beatsPerBar;
    const isFinal = phrase === phraseBars.length - 1;
    for (let i = 0; i < length; i++, bar++) {
      const rhythms = RHYTHMS[beatsPerBar];
      const isLastBar = i === length - 1;
      const pattern = isLastBar
        ? pick(rng, isFinal ? rhythms.final : rhythms.cadence)
        : pick(rng, rhythms.inner);
      let beat = bar * beatsPerBar;
      pattern.forEach((lengthBeats, j) => {
        slots.push({
          startBeat: beat,
          lengthBeats,
          phrase,
          phraseFraction: (beat - phraseStart) / phraseLength,
          endsPhrase: isLastBar && j === pattern.length - 1,
        });
        beat += lengthBeats;
      });
    }
  });

  // Arch contour per phrase: start low, peak past the middle, fall to the cadence.
  const contours = phraseBars.map((_, phrase) => ({
    start: rng.int(3),
    peak: 4 + rng.int(3),
    end: cadences[phrase] === "authentic" ? 0 : 2 + rng.int(3),
  }));
  const contourAt = (slot: Slot) => {
    const c = contours[slot.phrase];
    const t = slot.phraseFraction;
    return t < 0.6
      ? c.start + (c.peak - c.start) * (t / 0.6)
      : c.peak + (c.end - c.peak) * ((t - 0.6) / 0.4);
  };

  const melodyDegrees: number[] = [];
  slots.forEach((slot, i) => {
    const chord = chordAt(slot.startBeat).degree;
    const prev = i === 0 ? Math.round(contourAt(slot)) : melodyDegrees[i - 1];
    const onBeat = Number.isInteger(slot.startBeat);
    let degree: number;
    if (slot.endsPhrase) {
      // Cadence tone: the tonic after V–I, a tone of V after a half cadence; nearest to the previous note.
      const targets = cadences[slot.phrase] === "authentic"
        ? [0, 7]
        : [-3, 1, 4].filter((d) => d >= lowDegree && d <= highDegree);
      degree = targets.reduce((best, d) => (Math.abs(d - prev) < Math.abs(best - prev) ? d : best));
    } else if (onBeat || i === 0) {
      // Chord tone near the contour, with leaps kept small and a little chance.
      const target = contourAt(slot);
      let best = lowDegree, bestScore = Infinity;
      for (let d = lowDegree; d <= highDegree; d++) {
        if (!isChordTone(d, chord)) continue;
        const leap = Math.abs(d - prev);
        // Repeated notes are allowed but discouraged, so the line keeps moving.
        const score = Math.abs(d - target) + 0.5 * leap + (leap > 4 ? 3 : 0) +
          (leap === 0 ? 1.5 : 0) + rng.next() * 1.2;
        if (score < bestScore) [best, bestScore] = [d, score];
      }
      degree = best;
    } else {
      // Off the beat: a step towards the next note's goal (passing tone), or a neighbour tone.
      const next = slots[i + 1];
      const goal = next ? contourAt(next) : prev;
      const direction = Math.sign(Math.round(goal) - prev) || (rng.next() < 0.5 ? -1 : 1);
      degree = prev + direction;
      if (degree < lowDegree || degree > highDegree) degree = prev - direction;
    }
    melodyDegrees.push(degree);
  });

  // Phrase dynamics: crescendo to the middle, diminuendo to the cadence, accented downbeats.
  const phraseStartBar: number[] = [];
  phraseBars.reduce((start, length) => (phraseStartBar.push(start), start + length), 0);
  const velocity = (base: number, swell: number, beat: number, jitter: number) => {
    const barIndex = Math.floor(beat / beatsPerBar);
    let phrase = phraseBars.length - 1;
    while (phrase > 0 && phraseStartBar[phrase] > barIndex) phrase--;
    const t = (beat - phraseStartBar[phrase] * beatsPerBar) / (phraseBars[phrase] * beatsPerBar);
    const accent = beat % beatsPerBar === 0 ? 6 : 0;
    const v = base + swell * Math.sin(Math.PI * Math.min(Math.max(t, 0), 1)) + accent +
      (rng.next() * 2 - 1) * jitter;
    return Math.max(1, Math.min(127, Math.round(v)));
  };

  const melody: Note[] = slots.map((slot, i) => {
    const chord = chordAt(slot.startBeat).degree;
    // Legato, with a breath after each phrase.
    const held = slot.endsPhrase ? 0.85 : 0.95;
    return {
      pitch: melodyHome + semitones(melodyDegrees[i], chord),
      startSec: toSec(slot.startBeat),
      endSec: toSec(slot.startBeat + slot.lengthBeats * held),
      velocity: velocity(70, 18, slot.startBeat, 4),
    };
  });

  // --- Accompaniment. Chord roots in 43..54 (G2..F#3), so triads stay at or below 61.
  const accompanimentNotes: Note[] = [];
  const add = (pitch: number, startBeat: number, lengthBeats: number, base: number) => {
    accompanimentNotes.push({
      pitch,
      startSec: toSec(startBeat),
      endSec: toSec(startBeat + lengthBeats),
      velocity: velocity(base, 10, startBeat, 3),
    });
  };
  const tonicBass = 43 + ((tonicPitchClass - 7 + 12) % 12);
  const lastBarStart = (bars - 1) * beatsPerBar;
  for (const span of spans) {
    // Root-position triad: root, third, fifth as pitches.
    let root = tonicBass + semitones(span.degree, span.degree);
    while (root > 54) root -= 12;
    const triad = [0, 2, 4].map((step) =>
      root + semitones(span.degree + step, span.degree) - semitones(span.degree, span.degree)
    );
    const [r, third, fifth] = triad;
    const spanBeats = span.endBeat - span.startBeat;
    if (span.startBeat >= lastBarStart) {
      // Final bar: a held chord over the bass.
      add(r - 12, span.startBeat, spanBeats * 0.95, 56);
      for (const pitch of triad) add(pitch, span.startBeat, spanBeats * 0.95, 50);
      continue;
    }
    if (accompaniment === "alberti" || accompaniment === "broken") {
      const figure = accompaniment === "alberti"
        ? [r, fifth, third, fifth]
        : [r, third, fifth, third];
      for (let k = 0; k * 0.5 < spanBeats; k++) {
        add(figure[k % 4], span.startBeat + k * 0.5, 0.45, 48);
      }
    } else if (accompaniment === "block") {
      add(r - 12, span.startBeat, spanBeats * 0.95, 54);
      for (let beat = 0; beat < spanBeats; beat++) {
        for (const pitch of triad) add(pitch, span.startBeat + beat, 0.9, 46);
      }
    } else {
      // Waltz: bass on the span's first beat, the chord on the others.
      add(r - 12, span.startBeat, 0.95, 54);
      for (let beat = 1; beat < spanBeats; beat++) {
        for (const pitch of triad) add(pitch, span.startBeat + beat, 0.9, 44);
      }
      if (spanBeats === 1) { for (const pitch of triad) add(pitch, span.startBeat, 0.9, 44); }
    }
  }

  const notes = [...melody, ...accompanimentNotes].sort((a, b) =>
    a.startSec - b.startSec || a.pitch - b.pitch
  );
  const beatCount = bars * beatsPerBar;
  const beatsSec = Array.from({ length: beatCount }, (_, i) => toSec(i));

  const numerals = mode === "major" ? MAJOR_NUMERALS : MINOR_NUMERALS;
  return {
    piece: { id: options.id, notes, tempoBpm, beatsPerBar, beatsSec },
    melody,
    accompaniment: accompanimentNotes,
    info: {
      tonicPitchClass,
      mode,
      beatsPerBar,
      tempoBpm,
      progression: chordsPerBar.map((chords) => chords.map((d) => numerals[d])),
      phraseBars,
      accompaniment,
    },
  };
}
