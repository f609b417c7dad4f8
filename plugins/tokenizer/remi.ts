/**
 * REMI, "REvamped MIDI-derived events": Huang & Yang, "Pop Music Transformer:
 * Beat-based Modeling and Generation of Expressive Pop Piano Compositions"
 * (ACM MM 2020), in the form MidiTok's `REMI` tokenizer uses (Fradet et al.,
 * "MidiTok", ISMIR 2021 LBD): time is written as bars and positions on a beat
 * grid instead of time shifts.
 *
 * A piece is `BOS`, then per bar `BAR` (the first one followed by
 * `TIMESIG_n`), `TEMPO_t` when the bar's tempo bin changes, and for every note
 * `POSITION_k` (only when it differs from the previous note's), `PITCH_p`,
 * `VELOCITY_v`, `DURATION_d`; then `EOS`. Token ids, in this order:
 *
 * | range | count (defaults) |
 * | --- | --- |
 * | `BAR` | 1 |
 * | `POSITION_k`, k = 0..stepsPerBeat·maxBeatsPerBar-1 | 48 |
 * | `PITCH_p`, p = minPitch..maxPitch | 88 |
 * | `VELOCITY_b`, b = 0..velocityBins-1 | 32 |
 * | `DURATION_d`, d = 1..stepsPerBeat·maxDurationBeats grid steps | 32 |
 * | `TEMPO_t`, t = 0..tempoBins-1 | 32 |
 * | `TIMESIG_n`, n = 1..maxBeatsPerBar beats per bar | 12 |
 * | `PAD`, `BOS`, `EOS` | 3 |
 *
 * Notes are placed on the piece's own beat grid (`beatsSec`): a time in
 * seconds becomes a beat position by interpolating between beat onsets, and
 * past the last beat by extrapolating with the last interval (`beatGrid` of
 * `plugins/_music/theory.ts`, the one grid every plugin shares).
 *
 * Tempo bins are geometric between `minTempoBpm` and `maxTempoBpm`, shifted so
 * that 120 bpm is exactly a bin (MIDI's default tempo, and MAESTRO's). Because
 * a bin is up to ±3% off the real tempo, the encoder picks each bar's bin so
 * that decoded bar starts track the real ones: it keeps the previous bin while
 * that keeps the next bar's decoded start within half a grid step of the real
 * one, and otherwise picks the bin that lands nearest. Time in seconds
 * therefore does not drift over a long piece; the price is a TEMPO token every
 * few bars when a piece's tempo lies between two bins. `trackTempo: false`
 * instead writes the bin nearest each bar's tempo (stable tokens, drifting
 * seconds).
 *
 * @module
 */

import { definePlugin, p } from "../../mod.ts";
import type { Tokenizer } from "../_music/components.ts";
import { beatGrid } from "../_music/theory.ts";
import type { Note, Piece } from "../_music/types.ts";
import { binToVelocity, velocityToBin } from "./performance.ts";

/** Tempo every decoder assumes before the first TEMPO token. */
const DEFAULT_TEMPO_BPM = 120;
/** Beats per bar every decoder assumes before the first TIMESIG token. */
const DEFAULT_BEATS_PER_BAR = 4;
const DEFAULT_VELOCITY = 64;

/** Params of the REMI tokenizer (the plugin's params with defaults filled in). */
export interface RemiParams {
  stepsPerBeat: number;
  maxBeatsPerBar: number;
  minPitch: number;
  maxPitch: number;
  velocityBins: number;
  maxDurationBeats: number;
  tempoBins: number;
  minTempoBpm: number;
  maxTempoBpm: number;
  trackTempo: boolean;
}

/** First id of each token range, the special ids and the vocabulary size. */
export interface RemiLayout {
  bar: number;
  position: number;
  pitch: number;
  velocity: number;
  duration: number;
  tempo: number;
  timeSig: number;
  pad: number;
  bos: number;
  eos: number;
  vocabSize: number;
}

/**
 * Computes the id layout for given params.
 *
 * @param params Tokenizer params.
 * @returns The layout.
 */
export function remiLayout(params: RemiParams): RemiLayout {
  const bar = 0;
  const position = bar + 1;
  const pitch = position + params.stepsPerBeat * params.maxBeatsPerBar;
  const velocity = pitch + (params.maxPitch - params.minPitch + 1);
  const duration = velocity + params.velocityBins;
  const tempo = duration + params.stepsPerBeat * params.maxDurationBeats;
  const timeSig = tempo + params.tempoBins;
  const pad = timeSig + params.maxBeatsPerBar;
  return {
    bar,
    position,
    pitch,
    velocity,
    duration,
    tempo,
    timeSig,
    pad,
    bos: pad + 1,
    eos: pad + 2,
    vocabSize: pad + 3,
  };
}

/**
 * The tempo of each bin in bpm: geometric from about `minTempoBpm` to about
 * `maxTempoBpm` with 120 bpm exactly on a bin (when it lies in the range).
 *
 * @param params `tempoBins`, `minTempoBpm`, `maxTempoBpm`.
 * @returns `tempoBins` increasing tempos.
 */
export function tempoBinValues(
  params: Pick<RemiParams, "tempoBins" | "minTempoBpm" | "maxTempoBpm">,
): number[] {
  const { tempoBins, minTempoBpm, maxTempoBpm } = params;
  if (tempoBins === 1) return [Math.sqrt(minTempoBpm * maxTempoBpm)];
  const ratio = Math.pow(maxTempoBpm / minTempoBpm, 1 / (tempoBins - 1));
  let anchor = 0;
  if (DEFAULT_TEMPO_BPM >= minTempoBpm && DEFAULT_TEMPO_BPM <= maxTempoBpm) {
    anchor = Math.round(Math.log(DEFAULT_TEMPO_BPM / minTempoBpm) / Math.log(ratio));
    return Array.from(
      { length: tempoBins },
      (_, k) => DEFAULT_TEMPO_BPM * Math.pow(ratio, k - anchor),
    );
  }
  return Array.from({ length: tempoBins }, (_, k) => minTempoBpm * Math.pow(ratio, k));
}

/** The bin whose tempo is nearest to `bpm` on a log scale. */
function nearestTempoBin(bins: number[], bpm: number): number {
  let best = 0;
  let bestDistance = Infinity;
  for (let k = 0; k < bins.length; k++) {
    const distance = Math.abs(Math.log(bins[k] / bpm));
    if (distance < bestDistance) {
      best = k;
      bestDistance = distance;
    }
  }
  return best;
}

/** A REMI tokenizer: the `Tokenizer` interface plus its params, layout and tempo bins. */
export interface RemiTokenizer extends Tokenizer {
  params: RemiParams;
  layout: RemiLayout;
  tempoBinsBpm: number[];
}

/**
 * Builds a REMI tokenizer.
 *
 * @param params The plugin's params; missing ones take the defaults.
 * @returns The tokenizer.
 * @throws {Error} When a param is out of range.
 */
export function createRemiTokenizer(params: Partial<RemiParams> = {}): RemiTokenizer {
  const full: RemiParams = {
    stepsPerBeat: params.stepsPerBeat ?? 4,
    maxBeatsPerBar: params.maxBeatsPerBar ?? 12,
    minPitch: params.minPitch ?? 21,
    maxPitch: params.maxPitch ?? 108,
    velocityBins: params.velocityBins ?? 32,
    maxDurationBeats: params.maxDurationBeats ?? 8,
    tempoBins: params.tempoBins ?? 32,
    minTempoBpm: params.minTempoBpm ?? 40,
    maxTempoBpm: params.maxTempoBpm ?? 250,
    trackTempo: params.trackTempo ?? true,
  };
  const where = 'Cannot create tokenizer "tokenizer/remi"';
  for (
    const key of [
      "stepsPerBeat",
      "maxBeatsPerBar",
      "velocityBins",
      "maxDurationBeats",
      "tempoBins",
    ] as const
  ) {
    if (!Number.isInteger(full[key]) || full[key] < 1) {
      throw new Error(`${where}: ${key} must be an integer >= 1, received ${full[key]}`);
    }
  }
  if (
    !Number.isInteger(full.minPitch) || !Number.isInteger(full.maxPitch) || full.minPitch < 0 ||
    full.maxPitch > 127 || full.minPitch > full.maxPitch
  ) {
    throw new Error(
      `${where}: minPitch..maxPitch must be integers with 0 <= minPitch <= maxPitch <= 127, received ${full.minPitch}..${full.maxPitch}`,
    );
  }
  if (full.velocityBins > 127) {
    throw new Error(`${where}: velocityBins must be <= 127, received ${full.velocityBins}`);
  }
  if (!(full.minTempoBpm > 0) || !(full.maxTempoBpm > full.minTempoBpm)) {
    throw new Error(
      `${where}: tempo range must satisfy 0 < minTempoBpm < maxTempoBpm, received ${full.minTempoBpm}..${full.maxTempoBpm}`,
    );
  }
  const layout = remiLayout(full);
  const tempos = tempoBinValues(full);
  const { stepsPerBeat, maxBeatsPerBar, minPitch, maxPitch, velocityBins } = full;
  const maxDurationSteps = stepsPerBeat * full.maxDurationBeats;

  function encode(piece: Piece): Int32Array {
    const beatsPerBar = Number.isFinite(piece.beatsPerBar)
      ? Math.min(maxBeatsPerBar, Math.max(1, Math.round(piece.beatsPerBar)))
      : DEFAULT_BEATS_PER_BAR;
    const stepsPerBar = beatsPerBar * stepsPerBeat;
    const grid = beatGrid(piece);
    type Q = { step: number; pitch: number; duration: number; bin: number };
    const quantised: Q[] = [];
    for (const note of piece.notes) {
      if (
        !Number.isInteger(note.pitch) || note.pitch < minPitch || note.pitch > maxPitch ||
        !Number.isFinite(note.startSec) || !Number.isFinite(note.endSec) ||
        !(note.endSec > note.startSec)
      ) continue;
      const step = Math.max(0, Math.round(grid.position(note.startSec) * stepsPerBeat));
      const endStep = Math.round(grid.position(note.endSec) * stepsPerBeat);
      const duration = Math.min(maxDurationSteps, Math.max(1, endStep - step));
      quantised.push({
        step,
        pitch: note.pitch,
        duration,
        bin: velocityToBin(note.velocity, velocityBins),
      });
    }
    quantised.sort((a, b) => a.step - b.step || a.pitch - b.pitch || b.duration - a.duration);
    const out: number[] = [layout.bos];
    if (quantised.length === 0) {
      out.push(layout.eos);
      return Int32Array.from(out);
    }
    const lastBar = Math.floor(quantised[quantised.length - 1].step / stepsPerBar);
    const origin = grid.time(0);
    let decodedBarStartSec = 0;
    let tempoBin = -1;
    let next = 0;
    for (let bar = 0; bar <= lastBar; bar++) {
      out.push(layout.bar);
      if (bar === 0) out.push(layout.timeSig + beatsPerBar - 1);
      // Choose this bar's tempo so that the decoded start of the next bar
      // stays near the real one (see the module doc).
      const realStart = grid.time(bar * beatsPerBar) - origin;
      const realEnd = grid.time((bar + 1) * beatsPerBar) - origin;
      const halfStepSec = (realEnd - realStart) / (2 * stepsPerBar);
      const landing = (bin: number) => decodedBarStartSec + (60 * beatsPerBar) / tempos[bin];
      if (!full.trackTempo) {
        const bin = nearestTempoBin(tempos, (60 * beatsPerBar) / (realEnd - realStart));
        if (bin !== tempoBin) out.push(layout.tempo + bin);
        tempoBin = bin;
      } else if (tempoBin < 0 || Math.abs(landing(tempoBin) - realEnd) > halfStepSec) {
        const remaining = realEnd - decodedBarStartSec;
        const ideal = remaining > 0 ? (60 * beatsPerBar) / remaining : tempos[tempos.length - 1];
        let best = nearestTempoBin(tempos, ideal);
        // The log-nearest bin is not always the one landing nearest; check its neighbours.
        for (const k of [best - 1, best + 1]) {
          if (k >= 0 && k < tempos.length) {
            if (Math.abs(landing(k) - realEnd) < Math.abs(landing(best) - realEnd)) best = k;
          }
        }
        if (best !== tempoBin) out.push(layout.tempo + best);
        tempoBin = best;
      }
      decodedBarStartSec = landing(tempoBin);
      let position = -1;
      const barEndStep = (bar + 1) * stepsPerBar;
      for (; next < quantised.length && quantised[next].step < barEndStep; next++) {
        const q = quantised[next];
        const before = quantised[next - 1];
        // One pitch struck twice on one step is one note (the longer, sorted first).
        if (before && before.step === q.step && before.pitch === q.pitch) continue;
        const k = q.step - bar * stepsPerBar;
        if (k !== position) {
          out.push(layout.position + k);
          position = k;
        }
        out.push(layout.pitch + q.pitch - minPitch);
        out.push(layout.velocity + q.bin);
        out.push(layout.duration + q.duration - 1);
      }
    }
    out.push(layout.eos);
    return Int32Array.from(out);
  }

  function decode(tokens: ArrayLike<number>, options: { id?: string } = {}): Piece {
    // Bars as decoded: start beat, start second, tempo, beats per bar.
    const barBeat: number[] = [0];
    const barSec: number[] = [0];
    const barTempo: number[] = [DEFAULT_TEMPO_BPM];
    const barBeats: number[] = [DEFAULT_BEATS_PER_BAR];
    let started = false; // whether the first BAR has been seen
    let position = 0;
    let pendingPitch = -1;
    let pendingVelocity = -1;
    let lastVelocity = DEFAULT_VELOCITY;
    // Notes in beats; mapped to seconds once the tempo map is complete.
    const starts: number[] = [],
      ends: number[] = [],
      pitches: number[] = [],
      velocities: number[] = [];

    for (let i = 0; i < tokens.length; i++) {
      const id = tokens[i];
      if (!Number.isInteger(id) || id < 0) continue;
      const last = barBeat.length - 1;
      if (id === layout.bar) {
        if (started) {
          barBeat.push(barBeat[last] + barBeats[last]);
          barSec.push(barSec[last] + (barBeats[last] * 60) / barTempo[last]);
          barTempo.push(barTempo[last]);
          barBeats.push(barBeats[last]);
        }
        started = true;
        position = 0;
        pendingPitch = -1;
      } else if (id < layout.pitch) {
        started = true;
        position = id - layout.position;
        pendingPitch = -1;
      } else if (id < layout.velocity) {
        started = true;
        pendingPitch = id - layout.pitch + minPitch;
        pendingVelocity = -1;
      } else if (id < layout.duration) {
        if (pendingPitch >= 0) pendingVelocity = binToVelocity(id - layout.velocity, velocityBins);
      } else if (id < layout.tempo) {
        if (pendingPitch < 0) continue;
        const startBeat = barBeat[last] + position / stepsPerBeat;
        const velocity = pendingVelocity > 0 ? pendingVelocity : lastVelocity;
        starts.push(startBeat);
        ends.push(startBeat + (id - layout.duration + 1) / stepsPerBeat);
        pitches.push(pendingPitch);
        velocities.push(velocity);
        lastVelocity = velocity;
        pendingPitch = -1;
      } else if (id < layout.timeSig) {
        barTempo[last] = tempos[id - layout.tempo];
      } else if (id < layout.pad) {
        barBeats[last] = id - layout.timeSig + 1;
      } else if (id === layout.eos) {
        break;
      }
      // PAD, BOS and ids past the vocabulary are ignored.
    }

    const bars = barBeat.length;
    const beatToSec = (beat: number): number => {
      let lo = 0, hi = bars - 1; // last bar starting at or before `beat`
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (barBeat[mid] <= beat) lo = mid;
        else hi = mid - 1;
      }
      return barSec[lo] + ((beat - barBeat[lo]) * 60) / barTempo[lo];
    };
    const notes: Note[] = [];
    let endBeat = barBeat[bars - 1] + barBeats[bars - 1];
    for (let i = 0; i < starts.length; i++) {
      notes.push({
        pitch: pitches[i],
        startSec: beatToSec(starts[i]),
        endSec: beatToSec(ends[i]),
        velocity: velocities[i],
      });
      endBeat = Math.max(endBeat, ends[i]);
    }
    const beatsSec: number[] = [];
    for (let beat = 0; beat <= Math.ceil(endBeat); beat++) beatsSec.push(beatToSec(beat));
    return {
      id: options.id ?? "decoded",
      notes: endOverlaps(notes),
      tempoBpm: barTempo[0],
      beatsPerBar: barBeats[0],
      beatsSec,
    };
  }

  function tokenName(id: number): string {
    if (!Number.isInteger(id) || id < 0 || id >= layout.vocabSize) return `UNKNOWN_${id}`;
    if (id === layout.bar) return "BAR";
    if (id < layout.pitch) return `POSITION_${id - layout.position}`;
    if (id < layout.velocity) return `PITCH_${id - layout.pitch + minPitch}`;
    if (id < layout.duration) return `VELOCITY_${id - layout.velocity}`;
    if (id < layout.tempo) return `DURATION_${id - layout.duration + 1}`;
    if (id < layout.timeSig) return `TEMPO_${Math.round(tempos[id - layout.tempo])}`;
    if (id < layout.pad) return `TIMESIG_${id - layout.timeSig + 1}`;
    return ["PAD", "BOS", "EOS"][id - layout.pad];
  }

  return {
    name: "tokenizer/remi",
    vocabSize: layout.vocabSize,
    special: { pad: layout.pad, bos: layout.bos, eos: layout.eos },
    spec: { use: "tokenizer/remi", with: { ...full } },
    params: full,
    layout,
    tempoBinsBpm: tempos,
    encode,
    decode,
    tokenName,
  };
}

/**
 * Sorts notes by (startSec, pitch) and ends a note where the same pitch is
 * struck again, as a piano does; a note left without duration is dropped.
 */
function endOverlaps(notes: Note[]): Note[] {
  notes.sort((a, b) => a.startSec - b.startSec || a.pitch - b.pitch || b.endSec - a.endSec);
  const open: (Note | undefined)[] = new Array(128);
  const out: Note[] = [];
  for (const note of notes) {
    const prev = open[note.pitch];
    if (prev && prev.endSec > note.startSec) {
      if (prev.startSec >= note.startSec) continue; // the same onset twice: keep the longer
      prev.endSec = note.startSec;
    }
    open[note.pitch] = note;
    out.push(note);
  }
  return out;
}

export default definePlugin({
  name: "tokenizer/remi",
  kind: "tokenizer",
  version: "1.0.0",
  description:
    "REMI bar/position events on the beat grid: BAR, POSITION, PITCH, VELOCITY, DURATION, TEMPO (Huang & Yang 2020)",
  params: {
    stepsPerBeat: p.integer({
      default: 4,
      min: 1,
      description:
        "Grid steps per beat (4: sixteenth notes); onsets and durations are quantised to it",
    }),
    maxBeatsPerBar: p.integer({
      default: 12,
      min: 1,
      description: "Longest bar in beats (sets the number of POSITION and TIMESIG tokens)",
    }),
    minPitch: p.integer({
      default: 21,
      min: 0,
      max: 127,
      description: "Lowest PITCH token (MIDI)",
    }),
    maxPitch: p.integer({
      default: 108,
      min: 0,
      max: 127,
      description: "Highest PITCH token (MIDI)",
    }),
    velocityBins: p.integer({
      default: 32,
      min: 1,
      max: 127,
      description: "Number of VELOCITY tokens (MIDI velocity 1..127 split into equal bins)",
    }),
    maxDurationBeats: p.integer({
      default: 8,
      min: 1,
      description: "Longest DURATION in beats; longer notes are shortened to it",
    }),
    tempoBins: p.integer({
      default: 32,
      min: 1,
      description: "Number of TEMPO tokens, geometric between minTempoBpm and maxTempoBpm",
    }),
    minTempoBpm: p.number({ default: 40, min: 1, description: "Slowest TEMPO bin, about (bpm)" }),
    maxTempoBpm: p.number({ default: 250, min: 1, description: "Fastest TEMPO bin, about (bpm)" }),
    trackTempo: p.boolean({
      default: true,
      description:
        "Pick each bar's TEMPO so decoded times do not drift from the original; false: the bin nearest the bar's tempo",
    }),
  },
  create: (params) => createRemiTokenizer(params),
});
