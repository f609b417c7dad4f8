/**
 * The performance event encoding of Performance RNN and Music Transformer:
 * Oore, Simon, Dieleman, Eck & Simonyan, "This Time with Feeling: Learning
 * Expressive Musical Performance" (2018), as implemented by Magenta's
 * `performance_lib` (`Performance`, `PerformanceOneHotEncoding`).
 *
 * Token ids, in Magenta's one-hot order (defaults in brackets):
 *
 * | ids | event |
 * | --- | --- |
 * | 0..127 | `NOTE_ON_p` |
 * | 128..255 | `NOTE_OFF_p` |
 * | 256..355 | `TIME_SHIFT_k`, k = 1..`maxShiftSteps` [100] steps of `timeShiftMs` [10] ms |
 * | 356..387 | `VELOCITY_b`, b = 0..`velocityBins`-1 [32] |
 * | 388, 389, 390 | `PAD`, `BOS`, `EOS` |
 *
 * Differences from Magenta, each chosen so that decoding is total and a
 * round trip is exact up to the time step:
 * - At one step, note-offs come before note-ons, so a re-struck pitch reads as
 *   "release, strike" (Magenta orders by note index).
 * - A note that is re-struck while still sounding ends at the new onset
 *   (Magenta keeps a queue of open notes per pitch). The encoder truncates
 *   such overlaps itself, so its token strings never rely on the decoder's rule.
 * - Decoded velocity is the middle of its bin (Magenta: the lower edge), so
 *   re-encoding a decoded piece gives the same bins.
 *
 * @module
 */

import { definePlugin, p } from "../../mod.ts";
import type { Tokenizer } from "../_music/components.ts";
import { type Note, type Piece, sortNotes } from "../_music/types.ts";

/** Number of MIDI pitches; NOTE_ON and NOTE_OFF each have one token per pitch. */
const PITCHES = 128;
/** Velocity a decoder uses before the first VELOCITY token. */
const DEFAULT_VELOCITY = 64;

/** Width of one velocity bin: Magenta's `ceil(127 / bins)`. */
export function velocityBinSize(velocityBins: number): number {
  return Math.ceil(127 / velocityBins);
}

/**
 * Maps a MIDI velocity (1..127) to a 0-based bin, as Magenta's `velocity_to_bin`.
 *
 * @param velocity MIDI velocity; values outside 1..127 are clamped.
 * @param velocityBins Number of bins.
 * @returns The bin, 0..velocityBins-1.
 */
export function velocityToBin(velocity: number, velocityBins: number): number {
  const v = Math.min(127, Math.max(1, Math.round(velocity)));
  return Math.min(velocityBins - 1, Math.floor((v - 1) / velocityBinSize(velocityBins)));
}

/**
 * The velocity a bin decodes to: the middle of the bin, so that
 * `velocityToBin(binToVelocity(b)) === b`.
 *
 * @param bin 0-based bin.
 * @param velocityBins Number of bins.
 * @returns A MIDI velocity 1..127.
 */
export function binToVelocity(bin: number, velocityBins: number): number {
  const size = velocityBinSize(velocityBins);
  return Math.min(127, 1 + bin * size + Math.floor((size - 1) / 2));
}

/** Params of the performance tokenizer (the plugin's params with defaults filled in). */
export interface PerformanceParams {
  timeShiftMs: number;
  maxShiftSteps: number;
  velocityBins: number;
  maxNoteSec: number;
}

/** Token id layout of one performance tokenizer configuration. */
export interface PerformanceLayout {
  noteOn: number;
  noteOff: number;
  timeShift: number;
  velocity: number;
  pad: number;
  bos: number;
  eos: number;
  vocabSize: number;
}

/**
 * Computes the id layout for given params.
 *
 * @param params Tokenizer params.
 * @returns First id of each event range, the special ids and the vocabulary size.
 */
export function performanceLayout(
  params: Pick<PerformanceParams, "maxShiftSteps" | "velocityBins">,
): PerformanceLayout {
  const timeShift = 2 * PITCHES;
  const velocity = timeShift + params.maxShiftSteps;
  const pad = velocity + params.velocityBins;
  return {
    noteOn: 0,
    noteOff: PITCHES,
    timeShift,
    velocity,
    pad,
    bos: pad + 1,
    eos: pad + 2,
    vocabSize: pad + 3,
  };
}

/** A performance tokenizer: the `Tokenizer` interface plus its params and layout. */
export interface PerformanceTokenizer extends Tokenizer {
  params: PerformanceParams;
  layout: PerformanceLayout;
}

/**
 * Beats every half second (120 bpm) from 0 past `endSec`: the beat grid of a
 * decoded performance, which has no tempo of its own.
 */
export function beatsAt120(endSec: number): number[] {
  const count = Math.max(1, Math.ceil(endSec / 0.5) + 1);
  return Array.from({ length: count }, (_, i) => i * 0.5);
}

/**
 * Builds a performance tokenizer. Throws on params outside their ranges (the
 * runner validates the YAML first, so this only catches direct callers).
 *
 * @param params The plugin's params with defaults filled in.
 * @returns The tokenizer.
 * @throws {Error} When a param is out of range.
 */
export function createPerformanceTokenizer(
  params: Partial<PerformanceParams> = {},
): PerformanceTokenizer {
  const full: PerformanceParams = {
    timeShiftMs: params.timeShiftMs ?? 10,
    maxShiftSteps: params.maxShiftSteps ?? 100,
    velocityBins: params.velocityBins ?? 32,
    maxNoteSec: params.maxNoteSec ?? 5,
  };
  const { timeShiftMs, maxShiftSteps, velocityBins, maxNoteSec } = full;
  const where = 'Cannot create tokenizer "tokenizer/performance"';
  if (!(timeShiftMs > 0) || !Number.isFinite(timeShiftMs)) {
    throw new Error(`${where}: timeShiftMs must be a number > 0, received ${timeShiftMs}`);
  }
  if (!Number.isInteger(maxShiftSteps) || maxShiftSteps < 1) {
    throw new Error(`${where}: maxShiftSteps must be an integer >= 1, received ${maxShiftSteps}`);
  }
  if (!Number.isInteger(velocityBins) || velocityBins < 1 || velocityBins > 127) {
    throw new Error(`${where}: velocityBins must be an integer 1..127, received ${velocityBins}`);
  }
  if (!(maxNoteSec > 0)) {
    throw new Error(`${where}: maxNoteSec must be a number > 0, received ${maxNoteSec}`);
  }
  const layout = performanceLayout(full);
  const stepSec = timeShiftMs / 1000;
  const capSteps = Math.max(1, Math.round(maxNoteSec / stepSec));
  const stepToSec = (step: number) => (step * timeShiftMs) / 1000;

  function encode(piece: Piece): Int32Array {
    // Quantise into columns (MAESTRO has pieces of 30,000 notes: no objects
    // per note), dropping invalid notes.
    const count = piece.notes.length;
    const starts = new Int32Array(count);
    const ends = new Int32Array(count);
    const pitches = new Uint8Array(count);
    const noteBins = new Uint8Array(count);
    let m = 0;
    let sorted = true;
    let previousKey = -1;
    for (const note of piece.notes) {
      const pitch = note.pitch;
      if (
        !Number.isInteger(pitch) || pitch < 0 || pitch >= PITCHES ||
        !Number.isFinite(note.startSec) || !Number.isFinite(note.endSec) ||
        !(note.endSec > note.startSec)
      ) continue;
      const start = Math.max(0, Math.round(note.startSec / stepSec));
      starts[m] = start;
      ends[m] = Math.max(start + 1, Math.round(note.endSec / stepSec));
      pitches[m] = pitch;
      noteBins[m] = velocityToBin(note.velocity, velocityBins);
      const key = start * PITCHES + pitch;
      if (key < previousKey) sorted = false;
      previousKey = key;
      m++;
    }
    // Pieces come sorted by (startSec, pitch), which rounding keeps; sort otherwise.
    const order = new Uint32Array(m);
    for (let i = 0; i < m; i++) order[i] = i;
    if (!sorted) order.sort((a, b) => starts[a] - starts[b] || pitches[a] - pitches[b]);

    // Resolve same-pitch overlaps so that every NOTE_OFF the encoder writes
    // closes the note the decoder has open.
    const lastOfPitch = new Int32Array(PITCHES).fill(-1);
    const kept = new Uint8Array(m);
    let keptCount = 0;
    for (let j = 0; j < m; j++) {
      const i = order[j];
      const prev = lastOfPitch[pitches[i]];
      if (prev >= 0 && ends[prev] > starts[i]) {
        if (starts[prev] === starts[i]) {
          // Two onsets on one step: one note, as long as the longer.
          ends[prev] = Math.max(ends[prev], ends[i]);
          continue;
        }
        ends[prev] = starts[i];
      }
      lastOfPitch[pitches[i]] = i;
      kept[i] = 1;
      keptCount++;
    }

    // One sortable number per event: step, then offs before ons, then pitch;
    // the velocity bin rides in the lowest digits.
    const bins = velocityBins;
    const keys = new Float64Array(keptCount * 2);
    let k = 0;
    let lastStep = 0;
    for (let i = 0; i < m; i++) {
      if (!kept[i]) continue;
      keys[k++] = (ends[i] * 2 * PITCHES + pitches[i]) * bins;
      keys[k++] = ((starts[i] * 2 + 1) * PITCHES + pitches[i]) * bins + noteBins[i];
      lastStep = Math.max(lastStep, ends[i]);
    }
    keys.sort();

    // Each event takes at most 2 tokens plus one partial TIME_SHIFT; whole
    // shifts add at most lastStep / maxShiftSteps.
    const out = new Int32Array(2 + 3 * keys.length + Math.ceil(lastStep / maxShiftSteps));
    let length = 0;
    out[length++] = layout.bos;
    let step = 0;
    let currentBin = -1;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i];
      const rest = Math.floor(key / bins);
      const bin = key - rest * bins;
      const stepAndKind = Math.floor(rest / PITCHES);
      const pitch = rest - stepAndKind * PITCHES;
      const eventStep = stepAndKind >>> 1;
      let gap = eventStep - step;
      while (gap > 0) {
        const shift = gap < maxShiftSteps ? gap : maxShiftSteps;
        out[length++] = layout.timeShift + shift - 1;
        gap -= shift;
      }
      step = eventStep;
      if (stepAndKind & 1) {
        if (bin !== currentBin) {
          out[length++] = layout.velocity + bin;
          currentBin = bin;
        }
        out[length++] = layout.noteOn + pitch;
      } else {
        out[length++] = layout.noteOff + pitch;
      }
    }
    out[length++] = layout.eos;
    return out.slice(0, length);
  }

  function decode(tokens: ArrayLike<number>, options: { id?: string } = {}): Piece {
    const notes: Note[] = [];
    const openStart = new Int32Array(PITCHES).fill(-1);
    const openVelocity = new Int32Array(PITCHES);
    let openCount = 0;
    // Earliest step at which some open note reaches the cap; avoids scanning
    // all pitches on every TIME_SHIFT.
    let nextCapStep = Infinity;
    let step = 0;
    let velocity = DEFAULT_VELOCITY;

    const close = (pitch: number, endStep: number) => {
      const start = openStart[pitch];
      openStart[pitch] = -1;
      openCount--;
      // A note turned off on the step it started has no duration: dropped, as Magenta does.
      if (endStep > start) {
        notes.push({
          pitch,
          startSec: stepToSec(start),
          endSec: stepToSec(endStep),
          velocity: openVelocity[pitch],
        });
      }
    };
    const closeCapped = () => {
      nextCapStep = Infinity;
      if (openCount === 0) return;
      for (let pitch = 0; pitch < PITCHES; pitch++) {
        const start = openStart[pitch];
        if (start < 0) continue;
        if (step >= start + capSteps) close(pitch, start + capSteps);
        else nextCapStep = Math.min(nextCapStep, start + capSteps);
      }
    };

    for (let i = 0; i < tokens.length; i++) {
      const id = tokens[i];
      if (!Number.isInteger(id) || id < 0) continue;
      if (id < layout.noteOff) {
        const pitch = id - layout.noteOn;
        if (openStart[pitch] >= 0) close(pitch, step);
        openStart[pitch] = step;
        openVelocity[pitch] = velocity;
        openCount++;
        nextCapStep = Math.min(nextCapStep, step + capSteps);
      } else if (id < layout.timeShift) {
        const pitch = id - layout.noteOff;
        if (openStart[pitch] >= 0) close(pitch, step);
      } else if (id < layout.velocity) {
        step += id - layout.timeShift + 1;
        if (step >= nextCapStep) closeCapped();
      } else if (id < layout.pad) {
        velocity = binToVelocity(id - layout.velocity, velocityBins);
      } else if (id === layout.eos) {
        break;
      }
      // PAD, BOS and ids past the vocabulary are ignored.
    }
    // Notes still open at the end: closed at the cap or at the last step, and
    // given one step when they began on it, since they were struck.
    for (let pitch = 0; pitch < PITCHES; pitch++) {
      const start = openStart[pitch];
      if (start >= 0) close(pitch, Math.max(start + 1, Math.min(step, start + capSteps)));
    }
    sortNotes(notes);
    let endSec = 0;
    for (const note of notes) endSec = Math.max(endSec, note.endSec);
    return {
      id: options.id ?? "decoded",
      notes,
      tempoBpm: 120,
      beatsPerBar: 4,
      beatsSec: beatsAt120(endSec),
    };
  }

  function tokenName(id: number): string {
    if (!Number.isInteger(id) || id < 0 || id >= layout.vocabSize) return `UNKNOWN_${id}`;
    if (id < layout.noteOff) return `NOTE_ON_${id - layout.noteOn}`;
    if (id < layout.timeShift) return `NOTE_OFF_${id - layout.noteOff}`;
    if (id < layout.velocity) return `TIME_SHIFT_${id - layout.timeShift + 1}`;
    if (id < layout.pad) return `VELOCITY_${id - layout.velocity}`;
    return ["PAD", "BOS", "EOS"][id - layout.pad];
  }

  return {
    name: "tokenizer/performance",
    vocabSize: layout.vocabSize,
    special: { pad: layout.pad, bos: layout.bos, eos: layout.eos },
    spec: { use: "tokenizer/performance", with: { ...full } },
    params: full,
    layout,
    encode,
    decode,
    tokenName,
  };
}

export default definePlugin({
  name: "tokenizer/performance",
  kind: "tokenizer",
  version: "1.0.0",
  description:
    "Performance RNN / Music Transformer events: NOTE_ON, NOTE_OFF, TIME_SHIFT and VELOCITY tokens (Oore et al. 2018)",
  params: {
    timeShiftMs: p.number({
      default: 10,
      min: 1,
      description: "Length of one TIME_SHIFT step in milliseconds; times are quantised to it",
    }),
    maxShiftSteps: p.integer({
      default: 100,
      min: 1,
      description: "Largest TIME_SHIFT in steps; longer gaps take several tokens",
    }),
    velocityBins: p.integer({
      default: 32,
      min: 1,
      max: 127,
      description: "Number of VELOCITY tokens (MIDI velocity 1..127 split into equal bins)",
    }),
    maxNoteSec: p.number({
      default: 5,
      min: 0.01,
      description: "Decoding closes a note left open longer than this many seconds",
    }),
  },
  create: (params) => createPerformanceTokenizer(params),
});
