import assert from "node:assert/strict";
import { join } from "node:path";
import { findSoundFont, renderWav, wavPeak } from "./_audio.ts";
import { writeMidi } from "../_music/midi.ts";
import type { Piece } from "../_music/types.ts";

function hasFluidsynth(): boolean {
  try {
    return new Deno.Command("fluidsynth", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}
const canRender = hasFluidsynth() && findSoundFont() !== undefined;

/** A 16-bit PCM mono WAV file holding these samples. */
function wav(samples: number[]): Uint8Array {
  const bytes = new Uint8Array(44 + samples.length * 2);
  const view = new DataView(bytes.buffer);
  const ascii = (at: number, text: string) =>
    [...text].forEach((c, i) => (bytes[at + i] = c.charCodeAt(0)));
  ascii(0, "RIFF");
  view.setUint32(4, 36 + samples.length * 2, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, 8000, true);
  view.setUint32(28, 16000, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  ascii(36, "data");
  view.setUint32(40, samples.length * 2, true);
  samples.forEach((s, i) => view.setInt16(44 + i * 2, s, true));
  return bytes;
}

const piece: Piece = {
  id: "arpeggio",
  tempoBpm: 120,
  beatsPerBar: 4,
  beatsSec: [0, 0.5, 1],
  notes: [60, 64, 67, 72].map((pitch, i) => ({
    pitch,
    startSec: i * 0.25,
    endSec: i * 0.25 + 0.5,
    velocity: 100,
  })),
};

Deno.test("wavPeak() reads the largest 16-bit sample as a fraction of full scale", () => {
  assert.equal(wavPeak(wav([0, 16384, -8192])), 0.5);
  assert.equal(wavPeak(wav([0, -32768])), 1);
  assert.equal(wavPeak(wav([0, 0, 0])), 0);
  assert.equal(wavPeak(new TextEncoder().encode("not a wav file")), undefined);
});

Deno.test("renderWav() without the fluidsynth program says how to install it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const midi = join(dir, "a.mid");
    await Deno.writeFile(midi, writeMidi(piece));
    const result = await renderWav(midi, join(dir, "a.wav"), {
      fluidsynth: "fluidsynth-that-does-not-exist",
      soundFont: midi, // Any existing file gets past the SoundFont check.
    });
    assert.equal(result.ok, false);
    assert.match(
      (result as { reason: string }).reason,
      /^Cannot render audio: the "fluidsynth-that-does-not-exist" program is not installed; install them with `apt-get install fluidsynth fluid-soundfont-gm`/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("renderWav() reports a missing SoundFont or MIDI file instead of throwing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const missingFont = await renderWav(join(dir, "a.mid"), join(dir, "a.wav"), {
      soundFont: join(dir, "none.sf2"),
    });
    assert.deepEqual(missingFont, {
      ok: false,
      reason: `Cannot render audio: SoundFont "${join(dir, "none.sf2")}" does not exist`,
    });
    const font = join(dir, "font.sf2");
    await Deno.writeTextFile(font, "");
    const missingMidi = await renderWav(join(dir, "a.mid"), join(dir, "a.wav"), {
      soundFont: font,
    });
    assert.deepEqual(missingMidi, {
      ok: false,
      reason: `Cannot render "${join(dir, "a.mid")}": the file does not exist`,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "renderWav() renders a short MIDI file to a non-silent 44.1 kHz WAV (needs fluidsynth)",
  ignore: !canRender,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const midi = join(dir, "a.mid");
      await Deno.writeFile(midi, writeMidi(piece));
      const out = join(dir, "audio", "a.wav");
      assert.deepEqual(await renderWav(midi, out), { ok: true });
      const bytes = await Deno.readFile(out);
      const view = new DataView(bytes.buffer);
      assert.equal(view.getUint32(24, true), 44100, "sample rate");
      const channels = view.getUint16(22, true);
      const seconds = (bytes.length - 44) / (44100 * channels * 2);
      assert.ok(seconds >= 1.25, `the notes last 1.25 s, the audio ${seconds} s`);
      assert.ok(wavPeak(bytes)! > 0.01, "not silent");
      // Only the WAV is left in the output directory (the temp file is gone).
      assert.deepEqual([...Deno.readDirSync(join(dir, "audio"))].map((e) => e.name), ["a.wav"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "renderWav() refuses a silent render and leaves no file (needs fluidsynth)",
  ignore: !canRender,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const midi = join(dir, "empty.mid");
      await Deno.writeFile(midi, writeMidi({ ...piece, notes: [] }));
      const result = await renderWav(midi, join(dir, "empty.wav"));
      assert.equal(result.ok, false);
      assert.match((result as { reason: string }).reason, /the audio is silent/);
      assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["empty.mid"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
