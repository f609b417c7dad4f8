/**
 * Measures refinement on real solo piano with planted wrong notes:
 *
 *   deno run -A bench/refine_wrong_notes.ts [--maestro DIR] [--openmsx DIR]
 *     [--pieces 10] [--seconds 60] [--share 0.15] [--sustain]
 *     [--denoiser DIR | --train-steps 600 --train-pieces 100 [--save-denoiser DIR]]
 *
 * Pieces: the first `seconds` of `pieces` performances spread evenly over
 * MAESTRO's test split, and the piano tracks (General MIDI programs 0-7) of
 * the OpenMSX files that have at least 100 piano notes in that time: music
 * the denoiser and the judge's weights never saw. Notes are read as played
 * (key down to key up) unless `--sustain` applies the pedal. In each piece a
 * share of the notes is moved a minor second up or down (timing and velocity
 * kept), then `diffuse/pianoroll` refines it, and the result is compared
 * with the clean piece note by note (`plugins/_music/wrong_notes.ts`):
 *
 * - clashes: share of notes sounding with a note a minor second or major
 *   seventh away (`clashRate`), clean, planted and refined; the ratio
 *   refined / planted must be at most 0.5;
 * - right notes kept: notes the planting left alone that leave the
 *   refinement identical (pitch, onset, duration, velocity); at least 90%;
 * - input kept: all input notes (right and wrong) that leave it identical;
 * - restored: clean notes that come out identical, right ones kept plus
 *   wrong ones moved back to their true pitch.
 *
 * Rows: the default judge (no denoiser), and with a denoiser (loaded with
 * `--denoiser`, or trained here on MAESTRO's train split when
 * `--train-steps` > 0) the judge with the denoiser's evidence and the
 * previous default (`preserve: consonant`, strength 0.3).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { createRng } from "../pipeline/rng.ts";
import { defaultParams, testContext } from "../plugins/_testing.ts";
import { readMaestroMetadata, selectMaestro } from "../plugins/load/_maestro.ts";
import { readMidiFile } from "../plugins/_music/midi.ts";
import { cropPiece } from "../plugins/_music/theory.ts";
import type { Piece } from "../plugins/_music/types.ts";
import {
  addRepair,
  emptyRepair,
  plantWrongNotes,
  repairSummary,
} from "../plugins/_music/wrong_notes.ts";
import { initBackend } from "../plugins/_tf/backend.ts";
import {
  createDenoiser,
  type Denoiser,
  denoiserCodec,
  denoiserConfig,
} from "../plugins/_tf/denoiser.ts";
import refine, { type RefineParams, refinePieces } from "../plugins/diffuse/pianoroll.ts";
import train from "../plugins/diffuse/train.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    maestro: { type: "string", default: "../shared/data/maestro-v3.0.0" },
    openmsx: { type: "string", default: "../shared/data/openmsx" },
    pieces: { type: "string", default: "10" },
    seconds: { type: "string", default: "60" },
    share: { type: "string", default: "0.15" },
    seed: { type: "string", default: "7" },
    sustain: { type: "boolean", default: false },
    denoiser: { type: "string" },
    "train-steps": { type: "string", default: "0" },
    "train-pieces": { type: "string", default: "100" },
    "save-denoiser": { type: "string" },
  },
});
const seconds = Number(args.values.seconds);
const sustain = args.values.sustain!;

function maestroPieces(split: "train" | "test", count: number, sec: number): Piece[] {
  const dir = args.values.maestro!;
  const entries = selectMaestro(readMaestroMetadata(dir).entries, { splits: [split] });
  const stride = Math.max(1, Math.floor(entries.length / count));
  return entries.filter((_, i) => i % stride === 0).slice(0, count).map((e) => {
    const piece = readMidiFile(join(dir, e.midiFilename), { id: e.midiFilename, sustain });
    return sec > 0 ? cropPiece(piece, { startSec: 0, durationSec: sec }) : piece;
  });
}

function openMsxPieces(sec: number): Piece[] {
  const dir = args.values.openmsx!;
  const files = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => /\.midi?$/i.test(n))
    .sort();
  const out: Piece[] = [];
  for (const file of files) {
    const piece = cropPiece(
      readMidiFile(join(dir, file), { id: file, sustain, instruments: "piano" }),
      { startSec: 0, durationSec: sec },
    );
    if (piece.notes.length >= 100) out.push(piece);
  }
  return out;
}

const backend = await initBackend("auto");
console.log(`backend: ${backend.name}; notes read ${sustain ? "with" : "without"} the pedal`);

let denoiser: Denoiser | undefined;
if (args.values.denoiser) {
  denoiser = await denoiserCodec.load(args.values.denoiser);
  console.log(`denoiser: "${args.values.denoiser}" (${denoiser.step} steps)`);
} else if (Number(args.values["train-steps"]) > 0) {
  const pieces = maestroPieces("train", Number(args.values["train-pieces"]), 0)
    .map((p) => ({ ...p, split: "train" as const }));
  const t0 = performance.now();
  const out = await train.run(
    testContext({ seed: 1 }),
    { corpus: { pieces, skipped: [] } },
    defaultParams(train, {
      bars: 2,
      channels: 64,
      blocks: 4,
      batchSize: 16,
      trainSteps: Number(args.values["train-steps"]),
    }) as never,
  );
  denoiser = out.denoiser as Denoiser;
  console.log(
    `denoiser: trained ${denoiser.step} steps on ${pieces.length} MAESTRO train pieces in ${
      ((performance.now() - t0) / 1000).toFixed(0)
    } s`,
  );
  if (args.values["save-denoiser"]) {
    await Deno.mkdir(args.values["save-denoiser"], { recursive: true });
    await denoiserCodec.save(denoiser, args.values["save-denoiser"]);
  }
}

const rows: Array<{ name: string; params: Partial<RefineParams> }> = [
  { name: "judge (default)", params: {} },
];
if (denoiser) {
  rows.push(
    { name: "judge + denoiser evidence 0.5", params: { modelWeight: 0.5 } },
    { name: "consonant, strength 0.3 (before)", params: { preserve: "consonant" } },
  );
}
const model = denoiser ??
  createDenoiser(
    denoiserConfig({ channels: 8, blocks: 1, diffusionSteps: 20, bars: 2, stepsPerBeat: 4 }),
    createRng(1),
  );

const share = Number(args.values.share);
const sets: Array<[string, Piece[]]> = [
  [`MAESTRO test, ${args.values.pieces} excerpts of ${seconds} s`, [
    ...maestroPieces("test", Number(args.values.pieces), seconds),
  ]],
  [`OpenMSX piano tracks, ${seconds} s`, openMsxPieces(seconds)],
];
const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
console.log(
  "\n| pieces | refinement | clashes clean / planted / refined | ratio | right notes kept | input notes kept | clean notes restored | wrong: restored / removed / left |",
);
console.log("| --- | --- | --- | ---: | ---: | ---: | ---: | --- |");
for (const [setName, clean] of sets) {
  for (const row of rows) {
    const rng = createRng(Number(args.values.seed));
    const planted = clean.map((piece) => plantWrongNotes(rng, piece, share));
    const params = defaultParams(refine, row.params) as unknown as RefineParams;
    const t0 = performance.now();
    const out = refinePieces(
      testContext({ seed: 2 }),
      { denoiser: model, pieces: planted.map((p) => p.piece) },
      params,
    );
    const sec = (performance.now() - t0) / 1000;
    const counts = emptyRepair();
    clean.forEach((piece, i) => addRepair(counts, piece, planted[i], out.pieces[i]));
    const s = repairSummary(counts);
    console.log(
      `| ${setName} (${counts.notes} notes, ${counts.wrong} wrong) | ${row.name} | ${
        s.clashClean.toFixed(3)
      } / ${s.clashPlanted.toFixed(3)} / ${s.clashRefined.toFixed(3)} | ${
        s.clashRatio.toFixed(2)
      } | ${pct(s.rightKept)} | ${pct(s.inputKept)} | ${pct(s.cleanRestored)} | ${
        pct(s.wrongRestored)
      } / ${pct(s.wrongRemoved)} / ${pct(s.wrongLeft)} |`,
    );
    if (counts.added > 0) console.log(`  (${counts.added} notes added; ${sec.toFixed(1)} s)`);
  }
}
