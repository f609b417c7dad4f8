/**
 * Single-pass structural validator and decoder for Standard MIDI Files.
 *
 * Follows the "Standard MIDI Files 1.0" specification (MIDI Manufacturers
 * Association, RP-001): chunk layout, header division (ticks per quarter note or
 * SMPTE frames), variable-length quantities of at most 4 bytes, running status,
 * and sysex/meta events whose lengths must stay inside their track chunk. The
 * accept/reject rules for malformed input follow `data/bad-midi/README.txt`.
 *
 * One pass over the bytes both validates and extracts what a piano-roll reader
 * needs (paired notes in ticks, sustain pedal events, tempo and time signature
 * maps), so reading a file costs one walk over its events. Nothing is allocated
 * from a count or length field of the file: arrays grow with the events actually
 * present, and every length is checked against the bytes that are there.
 *
 * @module
 */

/** Thrown when bytes are not a usable Standard MIDI File; the message says what is wrong. */
export class MidiError extends Error {
  /**
   * Creates the error.
   *
   * @param message What is wrong, e.g. `track 1 chunk length 1095 runs past the end of the file (95 bytes left)`.
   * @param options Standard error options (`cause`).
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "MidiError";
  }
}

/** Notes paired from note-on/note-off events, as parallel arrays (one index per note). */
export interface SmfNotes {
  /** Onset in ticks from the start of the file. */
  startTick: number[];
  /** Release in ticks; `endTick >= startTick` (equal for zero-length notes). */
  endTick: number[];
  /** MIDI pitch 0..127. */
  pitch: number[];
  /** Note-on velocity 1..127. */
  velocity: number[];
  /** MIDI channel 0..15 (9 is the General MIDI drum channel). */
  channel: number[];
  /** Program (0..127) in effect on the note's channel and track at its onset. */
  program: number[];
  /**
   * Note indices in the order of their releases in the file (track after track;
   * notes closed at a track's end come last in that track), so within a track it
   * is sorted by `endTick`.
   */
  releaseOrder: number[];
}

/** Sustain pedal (controller 64) events, as parallel arrays in file order. */
export interface SmfSustain {
  /** Event time in ticks. */
  tick: number[];
  /** MIDI channel 0..15. */
  channel: number[];
  /** Controller value 0..127; 64 and above means the pedal is down. */
  value: number[];
}

/** Everything {@link decodeSmf} extracts from a file. */
export interface SmfContent {
  /** Format from the header: 0 or 1 (format 2 is rejected). */
  format: number;
  /** Number of track chunks read. */
  trackCount: number;
  /** Ticks per quarter note; 0 when the division is SMPTE. */
  ticksPerQuarter: number;
  /** Ticks per second for an SMPTE division (frames/s x ticks/frame); 0 otherwise. */
  smpteTicksPerSec: number;
  /** Every paired note of every track and channel. */
  notes: SmfNotes;
  /** Every controller 64 event of every track and channel. */
  sustain: SmfSustain;
  /** Valid tempo events (microseconds per quarter note > 0) in file order. */
  tempos: Array<{ tick: number; usPerQuarter: number }>;
  /** Valid time signatures (numerator >= 1, denominator a power of two up to 64) in file order. */
  timeSignatures: Array<{ tick: number; numerator: number; denominator: number }>;
  /** Largest end-of-track tick over all tracks. */
  endTick: number;
  /** Deviations that were tolerated or repaired, one sentence each. */
  warnings: string[];
}

// Largest legal variable-length quantity: 4 bytes, 28 bits.
const VLQ_TRUNCATED = -1;
const VLQ_TOO_LONG = -2;

/**
 * Reads a variable-length quantity at `pos` that must end before `end`.
 * Returns `value * 8 + byteCount`, or a negative code (packing avoids an
 * allocation per call in the hot loop).
 */
function readVlq(bytes: Uint8Array, pos: number, end: number): number {
  let value = 0;
  for (let count = 1; count <= 4; count++) {
    if (pos >= end) return VLQ_TRUNCATED;
    const byte = bytes[pos++];
    value = value * 128 + (byte & 0x7f);
    if (byte < 0x80) return value * 8 + count;
  }
  return VLQ_TOO_LONG;
}

function hex(byte: number): string {
  return "0x" + byte.toString(16).toUpperCase().padStart(2, "0");
}

function chunkId(bytes: Uint8Array, pos: number): string {
  return String.fromCharCode(bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]);
}

/** True when the 4 bytes at `pos` are printable ASCII, as every chunk type is. */
function isChunkId(bytes: Uint8Array, pos: number): boolean {
  for (let i = pos; i < pos + 4; i++) {
    if (bytes[i] < 0x20 || bytes[i] > 0x7e) return false;
  }
  return true;
}

function readU32(bytes: Uint8Array, pos: number): number {
  return bytes[pos] * 0x1000000 + (bytes[pos + 1] << 16 | bytes[pos + 2] << 8 | bytes[pos + 3]);
}

function readU32le(bytes: Uint8Array, pos: number): number {
  return bytes[pos + 3] * 0x1000000 + (bytes[pos + 2] << 16 | bytes[pos + 1] << 8 | bytes[pos]);
}

/** Returns the SMF inside a RIFF RMID container (Microsoft's `.rmi` wrapper). */
function unwrapRiff(bytes: Uint8Array, warnings: string[]): Uint8Array {
  if (bytes.length < 12 || chunkId(bytes, 8) !== "RMID") {
    const form = bytes.length >= 12 ? `"${chunkId(bytes, 8)}"` : "missing";
    throw new MidiError(`RIFF file is not an RMID MIDI file (form type ${form})`);
  }
  let pos = 12;
  while (pos + 8 <= bytes.length) {
    const length = readU32le(bytes, pos + 4);
    if (chunkId(bytes, pos) === "data") {
      const available = bytes.length - pos - 8;
      if (length > available) {
        throw new MidiError(
          `RIFF data chunk length ${length} runs past the end of the file (${available} bytes left)`,
        );
      }
      warnings.push("unwrapped the Standard MIDI File from a RIFF RMID container");
      return bytes.subarray(pos + 8, pos + 8 + length);
    }
    pos += 8 + length + (length & 1); // RIFF chunks are padded to even length
  }
  throw new MidiError("RIFF RMID file has no data chunk");
}

/**
 * Validates a Standard MIDI File and decodes its notes, sustain pedal, tempo
 * and time signature events in one pass.
 *
 * Rejected (throws): empty or non-MIDI data, truncated header, format other than
 * 0/1, zero ticks per quarter, unknown SMPTE frame rate, a track chunk longer than
 * the file, a truncated event, a variable-length quantity over 4 bytes, running
 * status with nothing to run from (it resets at every track), a data byte with
 * the high bit set, an undefined status byte (0xF1-0xFE), sysex/meta lengths past
 * the end of their track, no track chunk at all.
 *
 * Tolerated (a warning): a RIFF RMID wrapper, fewer tracks than the header
 * declares, bytes after the last track, a format 0 file with several tracks,
 * running status carried across a meta or sysex event (as mido and most readers
 * do), a missing end-of-track, events after end-of-track (ignored), tempo 0 or a
 * malformed tempo/time signature (ignored), notes never released (closed at the
 * track's end). Unknown chunks are skipped by length, and a header longer than 6
 * bytes is honoured, as the specification requires.
 *
 * @param input The file's bytes.
 * @returns The decoded content; times are in ticks.
 * @throws {MidiError} When the bytes are not a usable Standard MIDI File.
 * @example
 * ```ts
 * import { decodeSmf } from "./smf_check.ts";
 * import { writeMidi } from "./midi.ts";
 * // A C major scale of 0.25 s notes, as MIDI bytes.
 * const notes = [60, 62, 64, 65, 67, 69, 71, 72].map((pitch, i) => ({
 *   pitch,
 *   velocity: 80,
 *   startSec: i * 0.25,
 *   endSec: (i + 1) * 0.25,
 * }));
 * const bytes = writeMidi({ id: "scale", notes, tempoBpm: 120, beatsPerBar: 4, beatsSec: [0] });
 * const content = decodeSmf(bytes);
 * console.log(content.notes.pitch); // [60, 62, 64, 65, 67, 69, 71, 72]
 * ```
 */
export function decodeSmf(input: Uint8Array): SmfContent {
  const warnings: string[] = [];
  if (input.length === 0) throw new MidiError("file is empty");
  const bytes = input.length >= 4 && chunkId(input, 0) === "RIFF"
    ? unwrapRiff(input, warnings)
    : input;
  if (bytes.length < 8 || chunkId(bytes, 0) !== "MThd") {
    const start = Array.from(bytes.subarray(0, 4), hex).join(" ");
    throw new MidiError(`not a Standard MIDI File (expected "MThd", found ${start || "nothing"})`);
  }
  const headerLength = readU32(bytes, 4);
  if (headerLength < 6) {
    throw new MidiError(`header chunk length ${headerLength} is shorter than 6 bytes`);
  }
  if (8 + headerLength > bytes.length) {
    throw new MidiError(
      `header chunk is truncated (${bytes.length - 8} of ${headerLength} bytes present)`,
    );
  }
  const format = bytes[8] << 8 | bytes[9];
  const declaredTracks = bytes[10] << 8 | bytes[11];
  const division = bytes[12] << 8 | bytes[13];
  if (format === 2) {
    throw new MidiError("format 2 (independent sequences) is not supported");
  }
  if (format > 2) throw new MidiError(`unknown format ${format} (expected 0, 1 or 2)`);

  let ticksPerQuarter = 0;
  let smpteTicksPerSec = 0;
  if (division & 0x8000) {
    // High byte is minus the frame rate in two's complement; 29 means 30 drop-frame (29.97 fps).
    const framesPerSec = 256 - (division >> 8);
    const ticksPerFrame = division & 0xff;
    if (![24, 25, 29, 30].includes(framesPerSec)) {
      throw new MidiError(
        `SMPTE division has unknown frame rate ${framesPerSec} (expected 24, 25, 29 or 30)`,
      );
    }
    if (ticksPerFrame === 0) throw new MidiError("SMPTE division has 0 ticks per frame");
    smpteTicksPerSec = (framesPerSec === 29 ? 30000 / 1001 : framesPerSec) * ticksPerFrame;
  } else {
    ticksPerQuarter = division;
    if (ticksPerQuarter === 0) throw new MidiError("division is 0 ticks per quarter note");
  }

  const decoder = new TrackDecoder(bytes, warnings);
  let pos = 8 + headerLength;
  let tracksFound = 0;
  while (tracksFound < declaredTracks) {
    if (pos + 8 > bytes.length) break;
    if (!isChunkId(bytes, pos)) break;
    const id = chunkId(bytes, pos);
    const length = readU32(bytes, pos + 4);
    const available = bytes.length - pos - 8;
    if (length > available) {
      if (id === "MTrk") {
        throw new MidiError(
          `track ${
            tracksFound + 1
          } chunk length ${length} runs past the end of the file (${available} bytes left)`,
        );
      }
      if (tracksFound === 0) {
        throw new MidiError(
          `chunk "${id}" length ${length} runs past the end of the file (${available} bytes left)`,
        );
      }
      break; // a broken alien chunk after real tracks: treated as trailing bytes below
    }
    if (id === "MTrk") {
      tracksFound++;
      decoder.decodeTrack(pos + 8, pos + 8 + length, tracksFound);
    }
    pos += 8 + length; // unknown chunks are skipped by length, as the spec requires
  }
  if (declaredTracks === 0) throw new MidiError("header declares 0 tracks");
  if (tracksFound === 0) throw new MidiError("file has no track chunk");
  if (tracksFound < declaredTracks) {
    warnings.push(`header declares ${declaredTracks} tracks but the file has ${tracksFound}`);
  }
  if (pos < bytes.length) {
    warnings.push(`ignored ${bytes.length - pos} bytes after the last track`);
  }
  if (format === 0 && tracksFound > 1) {
    warnings.push(`format 0 file has ${tracksFound} tracks; read as format 1`);
  }
  return {
    format,
    trackCount: tracksFound,
    ticksPerQuarter,
    smpteTicksPerSec,
    notes: decoder.notes,
    sustain: decoder.sustain,
    tempos: decoder.tempos,
    timeSignatures: decoder.timeSignatures,
    endTick: decoder.endTick,
    warnings,
  };
}

/** Decodes track chunks one after another into shared note/event lists. */
class TrackDecoder {
  notes: SmfNotes = {
    startTick: [],
    endTick: [],
    pitch: [],
    velocity: [],
    channel: [],
    program: [],
    releaseOrder: [],
  };
  sustain: SmfSustain = { tick: [], channel: [], value: [] };
  tempos: Array<{ tick: number; usPerQuarter: number }> = [];
  timeSignatures: Array<{ tick: number; numerator: number; denominator: number }> = [];
  endTick = 0;
  #bytes: Uint8Array;
  #warnings: string[];
  // Open notes per (channel, pitch) key = channel * 128 + pitch, as FIFO linked lists
  // through #nextOpen, so a release ends the earliest unreleased onset (as @tonejs/midi does).
  // Every list is empty (-1) between tracks; #openKeys records keys that got an open
  // note in this track, so closing hanging notes never scans all 2,048 keys per track.
  #openHead = new Int32Array(16 * 128).fill(-1);
  #openTail = new Int32Array(16 * 128).fill(-1);
  #nextOpen: number[] = [];
  #openKeys: number[] = [];
  #program = new Uint8Array(16);

  constructor(bytes: Uint8Array, warnings: string[]) {
    this.#bytes = bytes;
    this.#warnings = warnings;
  }

  #fail(track: number, pos: number, what: string): never {
    throw new MidiError(`track ${track} at byte ${pos}: ${what}`);
  }

  #vlq(track: number, pos: number, end: number, what: string): number {
    const packed = readVlq(this.#bytes, pos, end);
    if (packed === VLQ_TRUNCATED) this.#fail(track, pos, `${what} runs past the end of the track`);
    if (packed === VLQ_TOO_LONG) this.#fail(track, pos, `${what} is longer than 4 bytes`);
    return packed;
  }

  /**
   * Reads a variable-length length at `pos` and checks that that many data
   * bytes fit in the track (meta events and sysex).
   *
   * @returns Where the data starts, and its length.
   */
  #lengthPrefixed(
    track: number,
    pos: number,
    end: number,
    names: { vlq: string; data: string },
  ): { pos: number; length: number } {
    const packed = this.#vlq(track, pos, end, names.vlq);
    const length = Math.floor(packed / 8);
    const start = pos + (packed % 8);
    if (length > end - start) {
      this.#fail(
        track,
        start,
        `${names.data} ${length} runs past the end of the track (${end - start} bytes left)`,
      );
    }
    return { pos: start, length };
  }

  /** Decodes the events in `bytes[start, end)` of track number `track` (1-based). */
  decodeTrack(start: number, end: number, track: number): void {
    const bytes = this.#bytes;
    const notes = this.notes;
    const head = this.#openHead;
    const tail = this.#openTail;
    const nextOpen = this.#nextOpen;
    const program = this.#program;
    const openKeys = this.#openKeys;
    program.fill(0); // programs are per track, as in @tonejs/midi and pretty_midi
    let openCount = 0;
    let pos = start;
    let tick = 0;
    let running = 0; // running status resets at every track
    let afterMetaOrSysex = false;
    let warnedRunningAfterMeta = false;
    let sawEndOfTrack = false;

    while (pos < end) {
      // Delta time; one byte in the common case.
      const byte = bytes[pos];
      if (byte < 0x80) {
        tick += byte;
        pos++;
      } else {
        const packed = this.#vlq(track, pos, end, "delta time");
        tick += Math.floor(packed / 8);
        pos += packed % 8;
      }
      if (pos >= end) this.#fail(track, pos, "track ends after a delta time, before its event");

      let status = bytes[pos];
      if (status < 0x80) {
        if (running === 0) {
          this.#fail(track, pos, `data byte ${hex(status)} with no running status to continue`);
        }
        if (afterMetaOrSysex && !warnedRunningAfterMeta) {
          // The spec cancels running status at meta/sysex events; mido and most readers
          // carry it across, and so do we (file 08 of the bad-MIDI corpus).
          this.#warnings.push(
            `track ${track} at byte ${pos}: running status continues across a meta or sysex event`,
          );
          warnedRunningAfterMeta = true;
        }
        status = running;
      } else {
        pos++;
        if (status < 0xf0) running = status;
      }

      if (status < 0xf0) {
        afterMetaOrSysex = false;
        const kind = status >> 4;
        const channel = status & 0x0f;
        if (kind === 0xc || kind === 0xd) {
          if (pos >= end) this.#fail(track, pos, "channel event runs past the end of the track");
          const data = bytes[pos];
          if (data >= 0x80) this.#fail(track, pos, `data byte ${hex(data)} has the high bit set`);
          pos++;
          if (kind === 0xc) program[channel] = data;
          continue;
        }
        if (pos + 2 > end) this.#fail(track, pos, "channel event runs past the end of the track");
        const data1 = bytes[pos];
        const data2 = bytes[pos + 1];
        if ((data1 | data2) >= 0x80) {
          const bad = data1 >= 0x80 ? data1 : data2;
          this.#fail(
            track,
            data1 >= 0x80 ? pos : pos + 1,
            `data byte ${hex(bad)} has the high bit set`,
          );
        }
        pos += 2;
        if (kind === 0x9 && data2 > 0) {
          const note = notes.startTick.length;
          notes.startTick.push(tick);
          notes.endTick.push(-1);
          notes.pitch.push(data1);
          notes.velocity.push(data2);
          notes.channel.push(channel);
          notes.program.push(program[channel]);
          nextOpen.push(-1);
          const key = channel << 7 | data1;
          if (tail[key] === -1) {
            head[key] = note;
            openKeys.push(key);
          } else {
            nextOpen[tail[key]] = note;
          }
          tail[key] = note;
          openCount++;
        } else if (kind === 0x8 || kind === 0x9) {
          const key = channel << 7 | data1;
          const note = head[key];
          if (note !== -1) { // a release with nothing open is ignored
            notes.endTick[note] = tick;
            notes.releaseOrder.push(note);
            head[key] = nextOpen[note];
            if (head[key] === -1) tail[key] = -1;
            openCount--;
          }
        } else if (kind === 0xb && data1 === 64) {
          this.sustain.tick.push(tick);
          this.sustain.channel.push(channel);
          this.sustain.value.push(data2);
        }
        continue;
      }

      afterMetaOrSysex = true;
      if (status === 0xff) {
        if (pos >= end) this.#fail(track, pos, "meta event runs past the end of the track");
        const type = bytes[pos++];
        const data = this.#lengthPrefixed(track, pos, end, {
          vlq: "meta event length",
          data: `meta event ${hex(type)} length`,
        });
        const length = data.length;
        pos = data.pos;
        if (type === 0x2f) {
          sawEndOfTrack = true;
          pos += length;
          if (pos < end) {
            this.#warnings.push(
              `track ${track}: ignored ${end - pos} bytes after the end-of-track event`,
            );
          }
          break;
        }
        if (type === 0x51) this.#tempo(track, tick, pos, length);
        else if (type === 0x58) this.#timeSignature(track, tick, pos, length);
        pos += length;
      } else if (status === 0xf0 || status === 0xf7) {
        const data = this.#lengthPrefixed(track, pos, end, {
          vlq: "sysex length",
          data: "sysex length",
        });
        pos = data.pos + data.length;
      } else {
        this.#fail(track, pos - 1, `undefined status byte ${hex(status)}`);
      }
    }

    if (!sawEndOfTrack) this.#warnings.push(`track ${track}: no end-of-track event`);
    if (openCount > 0) {
      // Notes never released end where the track ends (bad-MIDI file 12).
      for (const key of openKeys) {
        for (let note = head[key]; note !== -1; note = nextOpen[note]) {
          notes.endTick[note] = tick;
          notes.releaseOrder.push(note);
        }
        head[key] = -1;
        tail[key] = -1;
      }
      this.#warnings.push(
        `track ${track}: ${openCount} notes were never released; ended them at the end of the track`,
      );
    }
    openKeys.length = 0;
    if (tick > this.endTick) this.endTick = tick;
  }

  #tempo(track: number, tick: number, pos: number, length: number): void {
    const bytes = this.#bytes;
    if (length !== 3) {
      this.#warnings.push(`track ${track}: ignored a tempo event of length ${length} (expected 3)`);
      return;
    }
    const usPerQuarter = bytes[pos] << 16 | bytes[pos + 1] << 8 | bytes[pos + 2];
    if (usPerQuarter === 0) {
      this.#warnings.push(`track ${track}: ignored a tempo of 0 microseconds per quarter note`);
      return;
    }
    this.tempos.push({ tick, usPerQuarter });
  }

  #timeSignature(track: number, tick: number, pos: number, length: number): void {
    const bytes = this.#bytes;
    const numerator = length >= 2 ? bytes[pos] : 0;
    const denominatorPower = length >= 2 ? bytes[pos + 1] : 0;
    if (length < 2 || numerator === 0 || denominatorPower > 6) {
      this.#warnings.push(
        `track ${track}: ignored a malformed time signature (length ${length}, ${numerator}/2^${denominatorPower})`,
      );
      return;
    }
    this.timeSignatures.push({ tick, numerator, denominator: 1 << denominatorPower });
  }
}

/**
 * Strict structural check: lists everything that makes `bytes` a less than
 * fully valid Standard MIDI File. An empty list means any sequencer should read
 * it; a rejected file gives one entry, the reason.
 *
 * @param bytes The file's bytes.
 * @returns Problems found, one sentence each; `[]` when the file is clean.
 * @example
 * ```ts
 * import { checkSmf } from "./smf_check.ts";
 * console.log(checkSmf(new Uint8Array(0))); // ["file is empty"]
 * ```
 */
export function checkSmf(bytes: Uint8Array): string[] {
  try {
    return decodeSmf(bytes).warnings;
  } catch (error) {
    if (error instanceof MidiError) return [error.message];
    throw error;
  }
}
