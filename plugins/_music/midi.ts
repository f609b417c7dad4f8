/**
 * Robust MIDI reading and writing for HarmonyRL.
 *
 * Reading decodes the file with the single-pass validator in `smf_check.ts`.
 * @tonejs/midi needed 82 s on one core for MAESTRO's 1,276 files, 30 to 50 times
 * longer than this path, so it is used for writing only; its note pairing (the
 * earliest open note of a pitch ends first) is kept. The sustain pedal is applied
 * as in Magenta's `apply_sustain_control_changes` (magenta/note-seq,
 * `note_seq/sequences_lib.py`), which Onsets and Frames applies to MAESTRO.
 *
 * @module
 */

import tonejs from "@tonejs/midi";
import { errorMessage } from "../../mod.ts";
import {
  decodeSmf,
  MidiError,
  type SmfContent,
  type SmfNotes,
  type SmfSustain,
} from "./smf_check.ts";
import type { Note, Piece } from "./types.ts";

export { MidiError } from "./smf_check.ts";

const { Midi } = tonejs;

/** Options of {@link readMidi}. */
export interface ReadMidiOptions {
  /** Identifier of the piece (usually the file name without extension). */
  id: string;
  /** Where the bytes came from (file path); named in errors and kept in `Piece.source`. */
  source?: string;
  /** Apply the sustain pedal (controller 64) to note ends. Default `true`. */
  sustain?: boolean;
  /** Keep notes on channel 10 (General MIDI drums). Default `false`. */
  drums?: boolean;
  /**
   * `"all"` (default) keeps the notes of every non-drum instrument, read as piano;
   * `"piano"` keeps only General MIDI programs 0-7 (the pianos).
   */
  instruments?: "piano" | "all";
  /**
   * Longest piece kept, in seconds (default 4 hours): later notes are dropped and
   * longer ones cut, so a file with huge delta times cannot blow up later stages.
   */
  maxDurationSec?: number;
  /** Receives a sentence for each deviation that was tolerated or repaired. */
  onWarning?: (message: string) => void;
}

const DEFAULT_MAX_DURATION_SEC = 4 * 3600;
/** Hard cap on the beat grid's length (a 4-hour piece at 240 bpm has 57,600 beats). */
const MAX_BEATS = 1_000_000;
const DEFAULT_TEMPO_BPM = 120;
const DEFAULT_US_PER_QUARTER = 500_000;

/**
 * Reads a Standard MIDI File (format 0 or 1, or a RIFF RMID wrapper) into a piece.
 *
 * Times come from the tempo map (or SMPTE division). Notes are sorted by
 * (startSec, pitch); every value is finite, `endSec > startSec` (zero-length notes
 * are dropped) and all notes of all kept instruments are merged as piano.
 *
 * @param bytes The file's bytes.
 * @param options Identity, sustain, drum and instrument choices.
 * @returns The piece, with `tempoBpm` (first tempo, default 120), `beatsPerBar`
 *   (first time signature numerator, default 4) and `beatsSec` (every beat onset,
 *   counting beats in the time signature's denominator unit).
 * @throws {MidiError} `Cannot read "<source or id>": <what is wrong>` for bytes that
 *   are not a usable MIDI file.
 * @example
 * ```ts
 * import { readMidi, writeMidi } from "./midi.ts";
 * // A C major scale of 0.25 s notes, as MIDI bytes.
 * const notes = [60, 62, 64, 65, 67, 69, 71, 72].map((pitch, i) => ({
 *   pitch,
 *   velocity: 80,
 *   startSec: i * 0.25,
 *   endSec: (i + 1) * 0.25,
 * }));
 * const bytes = writeMidi({ id: "scale", notes, tempoBpm: 120, beatsPerBar: 4, beatsSec: [0] });
 * const piece = readMidi(bytes, { id: "scale" });
 * console.log(piece.notes.length, piece.notes[7].startSec); // 8 1.75
 * ```
 */
export function readMidi(bytes: Uint8Array, options: ReadMidiOptions): Piece {
  const label = options.source ?? options.id;
  try {
    return toPiece(decodeSmf(bytes), options);
  } catch (error) {
    const reason = errorMessage(error);
    const wrapped = error instanceof MidiError ? reason : `unexpected error: ${reason}`;
    throw new MidiError(`Cannot read "${label}": ${wrapped}`, { cause: error });
  }
}

/**
 * Reads a MIDI file from disk; see {@link readMidi}.
 *
 * @param path File path; the id defaults to the file name without extension.
 * @param options As for {@link readMidi}; `id` is optional and `source` is the path.
 * @returns The piece.
 * @throws {MidiError} `Cannot read "<path>": <reason>`, also when the file cannot be opened.
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { readMidiFile, writeMidi } from "./midi.ts";
 * const dir = Deno.makeTempDirSync();
 * const path = join(dir, "one_note.mid");
 * const notes = [{ pitch: 60, velocity: 80, startSec: 0, endSec: 0.5 }];
 * Deno.writeFileSync(
 *   path,
 *   writeMidi({ id: "one", notes, tempoBpm: 120, beatsPerBar: 4, beatsSec: [0] }),
 * );
 * const piece = readMidiFile(path);
 * console.log(piece.id, piece.notes.length); // "one_note" 1
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function readMidiFile(
  path: string,
  options: Omit<ReadMidiOptions, "id" | "source"> & { id?: string } = {},
): Piece {
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(path);
  } catch (error) {
    const reason = errorMessage(error);
    throw new MidiError(`Cannot read "${path}": ${reason}`, { cause: error });
  }
  const id = options.id ?? path.replace(/^.*[\\/]/, "").replace(/\.[^.]*$/, "");
  return readMidi(bytes, { ...options, id, source: path });
}

/** Maps ticks to seconds through a tempo map (or an SMPTE division). */
class TickClock {
  #segmentTick: number[] = [0];
  #segmentSec: number[] = [0];
  #secPerTick: number[];

  constructor(content: SmfContent) {
    if (content.smpteTicksPerSec > 0) {
      // SMPTE division: ticks are absolute time and tempo events do not apply.
      this.#secPerTick = [1 / content.smpteTicksPerSec];
      return;
    }
    const ppq = content.ticksPerQuarter;
    this.#secPerTick = [DEFAULT_US_PER_QUARTER / 1e6 / ppq];
    for (const tempo of sortByTick(content.tempos)) {
      const last = this.#segmentTick.length - 1;
      const sec = this.#segmentSec[last] +
        (tempo.tick - this.#segmentTick[last]) * this.#secPerTick[last];
      this.#segmentTick.push(tempo.tick);
      this.#segmentSec.push(sec);
      this.#secPerTick.push(tempo.usPerQuarter / 1e6 / ppq);
    }
  }

  /** Seconds at `tick`; the last tempo event at or before the tick applies. */
  seconds(tick: number): number {
    const ticks = this.#segmentTick;
    let segment = ticks.length - 1;
    if (segment > 0 && tick < ticks[segment]) {
      let low = 0; // invariant: ticks[low] <= tick < ticks[high]
      let high = segment;
      while (high - low > 1) {
        const mid = (low + high) >> 1;
        if (ticks[mid] <= tick) low = mid;
        else high = mid;
      }
      segment = low;
    }
    return this.#segmentSec[segment] + (tick - ticks[segment]) * this.#secPerTick[segment];
  }
}

/** Stable sort by tick (events at one tick keep file order, so the last one wins). */
function sortByTick<T extends { tick: number }>(events: T[]): T[] {
  return events.slice().sort((a, b) => a.tick - b.tick);
}

/** The event in effect at the first event's tick: the last one written at that tick. */
function firstInEffect<T extends { tick: number }>(sorted: T[]): T | undefined {
  let index = 0;
  while (index + 1 < sorted.length && sorted[index + 1].tick === sorted[0].tick) index++;
  return sorted[index];
}

function toPiece(content: SmfContent, options: ReadMidiOptions): Piece {
  const warn = options.onWarning ?? (() => {});
  for (const message of content.warnings) warn(message);
  const keepDrums = options.drums ?? false;
  const pianoOnly = (options.instruments ?? "all") === "piano";
  if (options.instruments !== undefined && options.instruments !== "all" && !pianoOnly) {
    throw new MidiError(
      `unknown instruments option "${options.instruments}" (expected "piano" or "all")`,
    );
  }
  const maxDurationSec = options.maxDurationSec ?? DEFAULT_MAX_DURATION_SEC;
  if (!(maxDurationSec > 0)) {
    throw new MidiError(`maxDurationSec must be a positive number, got ${maxDurationSec}`);
  }

  const raw = content.notes;
  const kept: number[] = [];
  for (let note = 0; note < raw.pitch.length; note++) {
    const isDrum = raw.channel[note] === 9;
    if (isDrum ? keepDrums : !pianoOnly || raw.program[note] < 8) kept.push(note);
  }
  const endTick = raw.endTick.slice();
  if (options.sustain ?? true) {
    const inScope = new Uint8Array(raw.pitch.length);
    for (const note of kept) if (raw.channel[note] !== 9) inScope[note] = 1;
    applySustainTicks(raw, endTick, inScope, content.sustain);
  }

  const clock = new TickClock(content);
  const notes: Note[] = [];
  let droppedZeroLength = 0;
  let droppedLate = 0;
  let cutLong = 0;
  for (const index of kept) {
    const startSec = clock.seconds(raw.startTick[index]);
    let endSec = clock.seconds(endTick[index]);
    if (startSec >= maxDurationSec) {
      droppedLate++;
      continue;
    }
    if (endSec > maxDurationSec) {
      endSec = maxDurationSec;
      cutLong++;
    }
    if (!(endSec > startSec)) {
      droppedZeroLength++;
      continue;
    }
    notes.push({ pitch: raw.pitch[index], startSec, endSec, velocity: raw.velocity[index] });
  }
  if (droppedZeroLength > 0) warn(`dropped ${droppedZeroLength} zero-length notes`);
  if (droppedLate > 0 || cutLong > 0) {
    warn(
      `piece is longer than ${maxDurationSec} s: dropped ${droppedLate} later notes and cut ${cutLong} notes there`,
    );
  }
  notes.sort((a, b) => a.startSec - b.startSec || a.pitch - b.pitch || a.endSec - b.endSec);
  for (const note of notes) {
    // Cheap last line of defence: the Piece contract promises finite, ordered times.
    if (!Number.isFinite(note.endSec) || !(note.startSec >= 0)) {
      throw new MidiError(
        `note ${note.pitch} has non-finite time ${note.startSec}..${note.endSec}`,
      );
    }
  }

  const tempos = sortByTick(content.tempos);
  const firstTempo = firstInEffect(tempos);
  const tempoBpm = firstTempo ? 60e6 / firstTempo.usPerQuarter : DEFAULT_TEMPO_BPM;
  const signatures = sortByTick(content.timeSignatures);
  const firstSignature = firstInEffect(signatures);
  const beatsPerBar = firstSignature ? firstSignature.numerator : 4;

  let pieceEndSec = clock.seconds(content.endTick);
  for (const note of notes) if (note.endSec > pieceEndSec) pieceEndSec = note.endSec;
  pieceEndSec = Math.min(pieceEndSec, maxDurationSec);
  const beatsSec = content.smpteTicksPerSec > 0
    ? smpteBeats(tempoBpm, firstSignature?.denominator ?? 4, pieceEndSec)
    : tempoMapBeats(content.ticksPerQuarter, signatures, clock, pieceEndSec);
  if (beatsSec.length >= MAX_BEATS) warn(`beat grid cut at ${MAX_BEATS} beats`);

  const piece: Piece = { id: options.id, notes, tempoBpm, beatsPerBar, beatsSec };
  if (options.source !== undefined) piece.source = options.source;
  return piece;
}

/**
 * Beat onsets from the tempo map: a beat is the time signature's denominator
 * note (a quarter in 4/4, an eighth in 6/8), restarting at every signature change.
 */
function tempoMapBeats(
  ticksPerQuarter: number,
  signatures: Array<{ tick: number; denominator: number }>,
  clock: TickClock,
  endSec: number,
): number[] {
  const segments = signatures.filter((s, i) =>
    i + 1 === signatures.length || signatures[i + 1].tick !== s.tick
  );
  if (segments.length === 0 || segments[0].tick > 0) segments.unshift({ tick: 0, denominator: 4 });
  const beats: number[] = [];
  for (let s = 0; s < segments.length && beats.length < MAX_BEATS; s++) {
    const segmentEndTick = s + 1 < segments.length ? segments[s + 1].tick : Infinity;
    const beatTicks = ticksPerQuarter * 4 / segments[s].denominator;
    for (let k = 0; beats.length < MAX_BEATS; k++) {
      const tick = segments[s].tick + k * beatTicks;
      if (tick >= segmentEndTick) break;
      const sec = clock.seconds(tick);
      if (sec >= endSec && beats.length > 0) return beats;
      beats.push(sec);
    }
  }
  return beats;
}

/** Beat onsets for an SMPTE-timed file: a steady grid at the file's nominal tempo. */
function smpteBeats(tempoBpm: number, denominator: number, endSec: number): number[] {
  const beatSec = 60 / tempoBpm * 4 / denominator;
  const beats = [0];
  for (let k = 1; k * beatSec < endSec && beats.length < MAX_BEATS; k++) beats.push(k * beatSec);
  return beats;
}

/**
 * Magenta's `apply_sustain_control_changes`, per MIDI channel, on tick times:
 * controller 64 >= 64 holds the pedal down; a note released while it is down
 * keeps sounding until the pedal is released, or until the same pitch is struck
 * again on that channel (it then ends at the new onset). Notes still sustained
 * at the end end at the last event. Only notes flagged in `inScope` take part
 * (drums do not). Mutates `endTick`.
 *
 * Magenta sorts all events by (time, type) with types ordered pedal down, pedal
 * up, note on, note off. Here each type is already a time-ordered stream, so a
 * merge gives the same order without sorting millions of events.
 */
function applySustainTicks(
  notes: SmfNotes,
  endTick: number[],
  inScope: Uint8Array,
  sustain: SmfSustain,
): void {
  if (sustain.tick.length === 0) return;
  const { startTick, pitch, channel } = notes;
  const releaseTick = notes.endTick; // original releases; `endTick` is the output
  const pedal = pedalChanges(sustain);
  const pedalTick = sustain.tick;
  const onsets: number[] = [];
  for (let note = 0; note < startTick.length; note++) if (inScope[note]) onsets.push(note);
  const ons = inTickOrder(onsets, startTick);
  const offs = inTickOrder(notes.releaseOrder.filter((note) => inScope[note] === 1), releaseTick);

  const pedalDown = new Uint8Array(16);
  // Notes sounding per (channel, pitch) key, held or released under the pedal, as
  // doubly linked lists in typed arrays: no allocation per note.
  const noteCount = startTick.length;
  const soundingHead = new Int32Array(16 * 128).fill(-1);
  const nextSounding = new Int32Array(noteCount);
  const prevSounding = new Int32Array(noteCount);
  const stopSounding = (note: number, key: number) => {
    const prev = prevSounding[note];
    const next = nextSounding[note];
    if (prev === -1) soundingHead[key] = next;
    else nextSounding[prev] = next;
    if (next !== -1) prevSounding[next] = prev;
  };
  // Notes released while the pedal was down, per channel.
  const sustained: number[][] = Array.from({ length: 16 }, () => []);
  const cut = new Uint8Array(noteCount); // ended early by a re-strike
  let p = 0, n = 0, r = 0;
  for (;;) {
    // `<=` in this order keeps Magenta's type order (pedal, note on, note off) at one tick.
    let type = 3;
    let tick = r < offs.length ? releaseTick[offs[r]] : Infinity;
    if (n < ons.length && startTick[ons[n]] <= tick) {
      type = 2;
      tick = startTick[ons[n]];
    }
    if (p < pedal.length && pedalTick[pedal[p]] <= tick) {
      type = 1;
      tick = pedalTick[pedal[p]];
    }
    if (tick === Infinity) break;
    if (type === 1) {
      const event = pedal[p++];
      const ch = sustain.channel[event];
      if (sustain.value[event] >= 64) {
        pedalDown[ch] = 1;
        continue;
      }
      pedalDown[ch] = 0;
      for (const note of sustained[ch]) {
        if (cut[note]) continue;
        endTick[note] = tick;
        stopSounding(note, ch << 7 | pitch[note]);
      }
      sustained[ch].length = 0;
    } else if (type === 2) {
      const note = ons[n++];
      const key = channel[note] << 7 | pitch[note];
      if (pedalDown[channel[note]]) {
        // Re-striking a pitch under the pedal ends its earlier notes, held or sustained.
        for (let earlier = soundingHead[key]; earlier !== -1; earlier = nextSounding[earlier]) {
          endTick[earlier] = tick;
          cut[earlier] = 1;
        }
        soundingHead[key] = -1;
      }
      const head = soundingHead[key];
      nextSounding[note] = head;
      prevSounding[note] = -1;
      if (head !== -1) prevSounding[head] = note;
      soundingHead[key] = note;
    } else {
      const note = offs[r++];
      if (cut[note]) continue;
      if (pedalDown[channel[note]]) sustained[channel[note]].push(note);
      else stopSounding(note, channel[note] << 7 | pitch[note]);
    }
  }
  // Magenta's last event time counts every pedal event, repeats included.
  let lastTick = 0;
  for (const t of pedalTick) if (t > lastTick) lastTick = t;
  if (ons.length > 0) lastTick = Math.max(lastTick, startTick[ons[ons.length - 1]]);
  if (offs.length > 0) lastTick = Math.max(lastTick, releaseTick[offs[offs.length - 1]]);
  for (const notesOnChannel of sustained) {
    for (const note of notesOnChannel) if (!cut[note]) endTick[note] = lastTick;
  }
}

/**
 * Indices of the pedal events that change a channel's pedal state, in Magenta's
 * order (time, then pedal-down before pedal-up at one time). Repeats of the
 * current state change nothing, and dropping them shrinks MAESTRO's 9.3 million
 * controller-64 events to the few that matter.
 */
function pedalChanges(sustain: SmfSustain): number[] {
  const { tick, value } = sustain;
  let sorted = true;
  for (let i = 1; i < tick.length && sorted; i++) {
    sorted = tick[i] > tick[i - 1] ||
      (tick[i] === tick[i - 1] && !(value[i] >= 64 && value[i - 1] < 64));
  }
  const order = sorted
    ? null
    : Array.from(tick, (_, i) => i).sort((a, b) =>
      tick[a] - tick[b] || Number(value[a] < 64) - Number(value[b] < 64) || a - b
    );
  const down = new Uint8Array(16); // the pedal starts up
  const changes: number[] = [];
  for (let i = 0; i < tick.length; i++) {
    const event = order === null ? i : order[i];
    const isDown = value[event] >= 64 ? 1 : 0;
    const ch = sustain.channel[event];
    if (down[ch] !== isDown) {
      down[ch] = isDown;
      changes.push(event);
    }
  }
  return changes;
}

/** `items` ordered by `tickOf[item]`, ties in the given order; a copy only when unsorted. */
function inTickOrder(items: number[], tickOf: number[]): number[] {
  for (let i = 1; i < items.length; i++) {
    if (tickOf[items[i]] < tickOf[items[i - 1]]) {
      const position = new Map(items.map((item, index) => [item, index]));
      return items.slice().sort((a, b) =>
        tickOf[a] - tickOf[b] || position.get(a)! - position.get(b)!
      );
    }
  }
  return items;
}

/** Options of {@link writeMidi}. */
export interface WriteMidiOptions {
  /** General MIDI program of the single track, 0..127. Default 0 (acoustic grand piano). */
  programNumber?: number;
}

/** Resolution of written files: ticks per quarter note. */
const WRITE_PPQ = 480;

/**
 * Writes a piece as a format 1 Standard MIDI File with @tonejs/midi: a tempo
 * track (tempo from `tempoBpm`, time signature `beatsPerBar`/4) and one note track
 * on channel 1 with one program. Times are rounded to ticks (480 per quarter
 * note); a note is at least one tick long. `readMidi` gives back the same notes
 * within one tick, except same-pitch notes that overlap, which MIDI cannot
 * tell apart.
 *
 * @param piece The piece; notes need integer pitch 0..127, integer velocity
 *   1..127 and finite times with `0 <= startSec < endSec`.
 * @param options Program number.
 * @returns The file's bytes.
 * @throws {Error} When a note, the tempo or the program is out of range.
 * @example
 * ```ts
 * import { readMidi, writeMidi } from "./midi.ts";
 * const bytes = writeMidi({
 *   id: "a",
 *   notes: [{ pitch: 60, startSec: 0, endSec: 0.5, velocity: 80 }],
 *   tempoBpm: 120,
 *   beatsPerBar: 4,
 *   beatsSec: [0],
 * });
 * console.log(readMidi(bytes, { id: "a" }).notes[0].endSec); // 0.5
 * ```
 */
export function writeMidi(piece: Piece, options: WriteMidiOptions = {}): Uint8Array {
  const fail = (what: string): never => {
    throw new Error(`Cannot write MIDI for "${piece.id}": ${what}`);
  };
  const program = options.programNumber ?? 0;
  if (!Number.isInteger(program) || program < 0 || program > 127) {
    fail(`programNumber ${program} is not an integer 0..127`);
  }
  const tempoBpm = piece.tempoBpm;
  // Tempo is stored as whole microseconds per quarter note in 3 bytes.
  if (!(tempoBpm >= 60e6 / 0xffffff && tempoBpm <= 60e6)) {
    fail(`tempoBpm ${tempoBpm} is out of range`);
  }
  const beatsPerBar = piece.beatsPerBar;
  if (!Number.isInteger(beatsPerBar) || beatsPerBar < 1 || beatsPerBar > 255) {
    fail(`beatsPerBar ${beatsPerBar} is not an integer 1..255`);
  }

  const midi = new Midi();
  midi.header.setTempo(tempoBpm);
  midi.header.timeSignatures = [{ ticks: 0, timeSignature: [beatsPerBar, 4] }];
  midi.header.update();
  midi.header.name = piece.id.replace(/[^\x20-\x7e]/g, "?");
  const track = midi.addTrack();
  track.channel = 0;
  track.instrument.number = program;
  // The exact tick rate of the tempo tonejs writes (whole microseconds per quarter note).
  const ticksPerSec = WRITE_PPQ * 1e6 / Math.floor(60e6 / tempoBpm);
  const maxTick = 0x0fffffff; // keeps every delta time within a legal 4-byte quantity
  piece.notes.forEach((note, i) => {
    const { pitch, velocity, startSec, endSec } = note;
    if (!Number.isInteger(pitch) || pitch < 0 || pitch > 127) {
      fail(`note ${i} has pitch ${pitch} (expected an integer 0..127)`);
    }
    if (!Number.isInteger(velocity) || velocity < 1 || velocity > 127) {
      fail(`note ${i} has velocity ${velocity} (expected an integer 1..127)`);
    }
    if (!(startSec >= 0 && endSec > startSec && Number.isFinite(endSec))) {
      fail(`note ${i} has times ${startSec}..${endSec} (expected 0 <= startSec < endSec)`);
    }
    const startTick = Math.round(startSec * ticksPerSec);
    const endTick = Math.max(startTick + 1, Math.round(endSec * ticksPerSec));
    if (endTick > maxTick) fail(`note ${i} ends at ${endSec} s, too late to write`);
    // tonejs writes Math.floor(velocity * 127); the half step keeps it exact.
    track.addNote({
      midi: pitch,
      ticks: startTick,
      durationTicks: endTick - startTick,
      velocity: (velocity + 0.5) / 127,
    });
  });
  return midi.toArray();
}

/**
 * Turns a piece id into a file base name: path separators and characters
 * that some file systems reject become `_`; an empty or dot-only id becomes `piece`.
 *
 * @param id A piece id.
 * @returns A name without directory parts, at most 200 characters long.
 */
export function safeFileName(id: string): string {
  // deno-lint-ignore no-control-regex
  let name = id.replace(/[\/\\:*?"<>|\x00-\x1f]/g, "_").trim().slice(0, 200);
  if (/^\.*$/.test(name)) name = "piece";
  return name;
}
