/**
 * Renders MIDI files to WAV audio with the FluidSynth command-line synthesizer
 * and a General MIDI SoundFont, for listening to generated pieces in reports.
 * FluidSynth is optional: every function here reports a missing synthesizer
 * or SoundFont as a result with a reason (how to install them), never by
 * throwing.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { errorMessage } from "../../mod.ts";

/** How to get FluidSynth and a SoundFont, for messages. */
export const INSTALL_HINT =
  "install them with `apt-get install fluidsynth fluid-soundfont-gm` (Debian/Ubuntu) or " +
  "`brew install fluid-synth` plus a General MIDI .sf2 file (macOS), or pass a SoundFont path";

/** Where Debian, Ubuntu, Fedora, Arch and Homebrew put General MIDI SoundFonts. */
export const SOUNDFONT_CANDIDATES = [
  "/usr/share/sounds/sf2/FluidR3_GM.sf2",
  "/usr/share/sounds/sf2/default-GM.sf2",
  "/usr/share/soundfonts/FluidR3_GM.sf2",
  "/usr/share/soundfonts/default.sf2",
  "/usr/share/soundfonts/FluidR3_GM2-2.sf2",
  "/opt/homebrew/share/soundfonts/default.sf2",
  "/usr/local/share/soundfonts/default.sf2",
];

/** A render whose peak stays below this fraction of full scale (-60 dBFS) counts as silent. */
export const SILENCE_PEAK = 1e-3;

/** Result of {@linkcode renderWav}. */
export type RenderResult = { ok: true } | { ok: false; reason: string };

/** Options of {@linkcode renderWav}. */
export interface RenderWavOptions {
  /**
   * SoundFont (`.sf2`) to play the MIDI with. Default: `$HARMONYRL_SOUNDFONT`,
   * else the first of {@linkcode SOUNDFONT_CANDIDATES} that exists.
   */
  soundFont?: string;
  /** Sample rate of the WAV in Hz (default 44100). */
  sampleRateHz?: number;
  /** Name or path of the FluidSynth program (default `fluidsynth`). */
  fluidsynth?: string;
  /** Longest a render may take before it is stopped (default 120000 ms). */
  timeoutMs?: number;
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** `$HARMONYRL_SOUNDFONT` as a list of zero or one path (empty without env access). */
export function soundFontFromEnv(): string[] {
  try {
    const value = Deno.env.get("HARMONYRL_SOUNDFONT");
    return value ? [value] : [];
  } catch {
    return [];
  }
}

/**
 * Finds a General MIDI SoundFont.
 *
 * @param soundFont A path to use if it exists.
 * @returns The path of an existing `.sf2` file, or `undefined`.
 */
export function findSoundFont(soundFont?: string): string | undefined {
  if (soundFont !== undefined) return isFile(soundFont) ? soundFont : undefined;
  // Without --allow-env the variable is simply not consulted.
  const [fromEnv] = soundFontFromEnv();
  if (fromEnv && isFile(fromEnv)) return fromEnv;
  return SOUNDFONT_CANDIDATES.find(isFile);
}

/**
 * Peak absolute sample value of a 16-bit PCM WAV file, as a fraction of full
 * scale: 0 means silence.
 *
 * @param bytes The WAV file's bytes.
 * @returns The peak in [0, 1], or `undefined` when it is not 16-bit PCM WAV.
 * @example
 * ```ts
 * import { wavPeak } from "./_audio.ts";
 * console.log(wavPeak(new Uint8Array(10))); // undefined
 * ```
 */
export function wavPeak(bytes: Uint8Array): number | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = (at: number) => String.fromCharCode(...bytes.subarray(at, at + 4));
  if (bytes.length < 12 || text(0) !== "RIFF" || text(8) !== "WAVE") return undefined;
  let bitsPerSample = 0;
  let format = 0;
  for (let at = 12; at + 8 <= bytes.length;) {
    const id = text(at);
    const size = view.getUint32(at + 4, true);
    if (id === "fmt " && at + 24 <= bytes.length) {
      format = view.getUint16(at + 8, true);
      bitsPerSample = view.getUint16(at + 22, true);
    } else if (id === "data") {
      if (format !== 1 || bitsPerSample !== 16) return undefined;
      const end = Math.min(bytes.length, at + 8 + size);
      let peak = 0;
      for (let i = at + 8; i + 1 < end; i += 2) {
        peak = Math.max(peak, Math.abs(view.getInt16(i, true)));
      }
      return peak / 32768;
    }
    at += 8 + size + (size % 2);
  }
  return undefined;
}

/**
 * Renders a MIDI file to a 16-bit stereo WAV file with FluidSynth
 * (`fluidsynth -ni -q -F out.wav -r 44100 SOUNDFONT file.mid`). The WAV is
 * written beside its target and renamed, so a failed render leaves no file.
 * FluidSynth exits with status 0 even when it cannot read the SoundFont or
 * write the output, so the result is checked: the file must exist and must
 * not be silent.
 *
 * @param midiPath The MIDI file.
 * @param wavPath Where to write the WAV (its directory is created).
 * @param options SoundFont, sample rate, program name and time limit.
 * @returns `{ ok: true }`, or `{ ok: false, reason }` saying what went wrong
 *   and, when FluidSynth or a SoundFont is missing, how to install them.
 *   Never throws.
 * @example
 * ```ts ignore
 * import { renderWav } from "./_audio.ts";
 * const result = await renderWav("runs/x/midi/a.mid", "runs/x/audio/a.wav");
 * if (!result.ok) console.warn(result.reason);
 * ```
 */
export async function renderWav(
  midiPath: string,
  wavPath: string,
  options: RenderWavOptions = {},
): Promise<RenderResult> {
  const soundFont = findSoundFont(options.soundFont);
  if (soundFont === undefined) {
    return {
      ok: false,
      reason: options.soundFont !== undefined
        ? `Cannot render audio: SoundFont "${options.soundFont}" does not exist`
        : `Cannot render audio: no General MIDI SoundFont found (looked in ${
          SOUNDFONT_CANDIDATES.slice(0, 4).join(", ")
        } and $HARMONYRL_SOUNDFONT); ${INSTALL_HINT}`,
    };
  }
  if (!isFile(midiPath)) {
    return { ok: false, reason: `Cannot render "${midiPath}": the file does not exist` };
  }
  const sampleRateHz = options.sampleRateHz ?? 44100;
  const temp = join(dirname(wavPath), `.${Date.now()}-${crypto.randomUUID().slice(0, 8)}.wav`);
  const timeout = AbortSignal.timeout(options.timeoutMs ?? 120_000);
  try {
    await Deno.mkdir(dirname(wavPath), { recursive: true });
    const command = new Deno.Command(options.fluidsynth ?? "fluidsynth", {
      args: ["-ni", "-q", "-F", temp, "-r", String(sampleRateHz), soundFont, midiPath],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: timeout,
    });
    let output: Deno.CommandOutput;
    try {
      output = await command.output();
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        return {
          ok: false,
          reason: `Cannot render audio: the "${
            options.fluidsynth ?? "fluidsynth"
          }" program is not installed; ${INSTALL_HINT}`,
        };
      }
      if (
        error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied
      ) {
        return {
          ok: false,
          reason:
            `Cannot render audio: running "fluidsynth" is not allowed (run Deno with --allow-run)`,
        };
      }
      throw error;
    }
    const stderr = new TextDecoder().decode(output.stderr).trim().split("\n").slice(-3).join("; ");
    if (timeout.aborted) {
      return {
        ok: false,
        reason: `Cannot render "${midiPath}": fluidsynth took longer than ${
          options.timeoutMs ?? 120_000
        } ms`,
      };
    }
    if (!output.success) {
      return {
        ok: false,
        reason: `Cannot render "${midiPath}": fluidsynth exited with status ${output.code}${
          stderr ? ` (${stderr})` : ""
        }`,
      };
    }
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(temp);
    } catch {
      return {
        ok: false,
        reason: `Cannot render "${midiPath}": fluidsynth wrote no file${
          stderr ? ` (${stderr})` : ""
        }`,
      };
    }
    // FluidSynth dithers its 16-bit output, so silence reads as ±1 LSB, not 0.
    const peak = wavPeak(bytes);
    if (peak !== undefined && peak < SILENCE_PEAK) {
      return {
        ok: false,
        reason:
          `Cannot render "${midiPath}": the audio is silent (is "${soundFont}" a General MIDI SoundFont, and does the file have notes?)${
            stderr ? ` (${stderr})` : ""
          }`,
      };
    }
    await Deno.rename(temp, wavPath);
    return { ok: true };
  } catch (error) {
    return {
      ok: false,
      reason: `Cannot render "${midiPath}": ${errorMessage(error)}`,
    };
  } finally {
    await Deno.remove(temp).catch(() => {});
  }
}
