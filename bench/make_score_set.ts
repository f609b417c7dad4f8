/**
 * Writes a folder of MIDI files for the reward sanity check of
 * `configs/score.yaml`: `real-*.mid`, excerpts of MAESTRO's test split, and
 * `<kind>-*.mid`, degenerate pieces of the same length (tests/_degenerate.ts).
 *
 *   deno run -A bench/make_score_set.ts <maestro-v3.0.0 dir> <out dir> [count] [seconds]
 *
 * Then `deno run -A bench/score_summary.ts <run dir>/scores.json` prints the mean total and
 * terms per kind (the file name's prefix).
 *
 * @module
 */

import { join } from "node:path";
import { createRng } from "../pipeline/rng.ts";
import { readMaestroMetadata } from "../plugins/load/_maestro.ts";
import { readMidiFile, writeMidi } from "../plugins/_music/midi.ts";
import { cropPiece, pieceEndSec } from "../plugins/_music/theory.ts";
import { DEGENERATE_KINDS, degeneratePiece } from "../tests/_degenerate.ts";

const [maestroDir, outDir, countArg = "32", secArg = "10"] = Deno.args;
if (!maestroDir || !outDir) {
  console.error("Usage: make_score_set.ts <maestro-v3.0.0 dir> <out dir> [count] [seconds]");
  Deno.exit(2);
}
const count = Number(countArg), sec = Number(secArg);
Deno.mkdirSync(outDir, { recursive: true });
const rng = createRng(2024);
const test = readMaestroMetadata(maestroDir).entries.filter((e) => e.split === "test");
for (let i = 0; i < count; i++) {
  const entry = test[rng.int(test.length)];
  const piece = readMidiFile(join(maestroDir, entry.midiFilename));
  const start = rng.next() * Math.max(0, pieceEndSec(piece.notes) - sec);
  const excerpt = { ...cropPiece(piece, { startSec: start, durationSec: sec }), id: `real-${i}` };
  Deno.writeFileSync(join(outDir, `real-${i}.mid`), writeMidi(excerpt));
}
for (const kind of DEGENERATE_KINDS) {
  for (let i = 0; i < count; i++) {
    const piece = degeneratePiece(kind, { rng, durationSec: sec, id: `${kind}-${i}` });
    Deno.writeFileSync(join(outDir, `${kind}-${i}.mid`), writeMidi(piece));
  }
}
console.log(`Wrote ${count * (1 + DEGENERATE_KINDS.length)} files to ${outDir}`);
