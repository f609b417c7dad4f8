import assert from "node:assert/strict";
import { createRng } from "../../pipeline/rng.ts";
import {
  bucketOf,
  MAX_BUCKET_SEC,
  MIN_BUCKET_SEC,
  pieceDurationSec,
  ReferenceCorpus,
} from "./reference.ts";
import { generateSyntheticPiece } from "../load/_synthetic.ts";
import { pieceEndSec } from "./theory.ts";
import type { Piece, Split } from "./types.ts";

/** `count` synthetic 4-bar pieces at 120 bpm (6 or 8 s long), ids s00, s01, ... */
function synthetic(count: number, split: (i: number) => Split = () => "train") {
  const rng = createRng(5);
  return Array.from({ length: count }, (_, i) => ({
    ...generateSyntheticPiece(rng, {
      id: `s${String(i).padStart(2, "0")}`,
      bars: 4,
      tempoMinBpm: 120,
      tempoMaxBpm: 120,
    }).piece,
    split: split(i),
  }));
}

/**
 * True when `excerpt` is `source` cropped to a window of `lengthSec`: some offset maps every
 * excerpt note onto a source note (same pitch and velocity), and the window holds no other
 * source onset.
 */
function isCropOf(excerpt: Piece, source: Piece, lengthSec: number): boolean {
  const first = excerpt.notes[0];
  return source.notes.some((anchor) => {
    if (anchor.pitch !== first.pitch) return false;
    const offset = anchor.startSec - first.startSec;
    const inWindow = source.notes.filter((n) =>
      n.startSec >= offset - 1e-9 && n.startSec < offset + lengthSec - 1e-9
    );
    return inWindow.length === excerpt.notes.length &&
      excerpt.notes.every((e) =>
        inWindow.some((n) =>
          n.pitch === e.pitch && n.velocity === e.velocity &&
          Math.abs(n.startSec - offset - e.startSec) < 1e-9
        )
      );
  });
}

Deno.test("bucketOf() rounds a length to the nearest power of two seconds on a log scale", () => {
  assert.equal(MIN_BUCKET_SEC, 1);
  assert.equal(MAX_BUCKET_SEC, 64);
  assert.equal(bucketOf(0), 1);
  assert.equal(bucketOf(-3), 1);
  assert.equal(bucketOf(NaN), 1);
  assert.equal(bucketOf(1), 1);
  assert.equal(bucketOf(1.4), 1); // log2 0.49
  assert.equal(bucketOf(1.5), 2); // log2 0.58
  assert.equal(bucketOf(3), 4); // log2 1.58
  assert.equal(bucketOf(5), 4); // log2 2.32
  assert.equal(bucketOf(5.6), 4); // just below 2^2.5 = 5.66
  assert.equal(bucketOf(5.7), 8);
  assert.equal(bucketOf(6), 8);
  assert.equal(bucketOf(16), 16);
  assert.equal(bucketOf(90), 64); // 2^7 = 128 is past the longest bucket
  assert.equal(bucketOf(1e6), 64);
});

Deno.test("pieceDurationSec() is the last note end", () => {
  const [piece] = synthetic(1);
  assert.equal(pieceDurationSec(piece), pieceEndSec(piece.notes));
  assert.equal(pieceDurationSec({ ...piece, notes: [] }), 0);
  const notes = [
    { pitch: 60, startSec: 0.5, endSec: 3, velocity: 80 },
    { pitch: 64, startSec: 1, endSec: 2, velocity: 80 },
  ];
  assert.equal(pieceDurationSec({ ...piece, notes }), 3);
});

Deno.test("ReferenceCorpus holds out the validation and test splits", () => {
  const pieces = synthetic(
    12,
    (i) => (i === 3 ? "validation" : i === 7 ? "test" : "train") as Split,
  );
  const ref = new ReferenceCorpus(pieces);
  assert.deepEqual(ref.heldOut.map((p) => p.id), ["s03", "s07"]);
  assert.equal(ref.train.length, 10);
  assert.ok(ref.train.every((p) => p.id !== "s03" && p.id !== "s07"));
  assert.deepEqual(ref.trainForHeldOut, ref.train);
  assert.equal(ref.excerptsPerBucket, 192);
  assert.equal(ref.seed, 1);
});

Deno.test("ReferenceCorpus with one split holds out every tenth piece by id", () => {
  // Given in reverse order: the choice follows the ids, not the order.
  const pieces = synthetic(25).reverse();
  const ref = new ReferenceCorpus(pieces);
  assert.deepEqual(ref.heldOut.map((p) => p.id), ["s09", "s19"]);
  // Calibration excerpts still come from every piece ...
  assert.equal(ref.train.length, 25);
  // ... but held-out pieces are judged against the other 23 only.
  assert.equal(ref.trainForHeldOut.length, 23);
  assert.ok(ref.trainForHeldOut.every((p) => !ref.heldOut.includes(p)));
  // Held-out excerpts come from the held-out pieces.
  for (const excerpt of ref.excerpts(2, "heldOut")) {
    assert.ok(["s09", "s19"].includes(excerpt.id), excerpt.id);
  }
  // A corpus of validation pieces only is split the same way.
  const validation = new ReferenceCorpus(synthetic(20, () => "validation"));
  assert.deepEqual(validation.heldOut.map((p) => p.id), ["s09", "s19"]);
  assert.equal(validation.trainForHeldOut.length, 18);
  // Fewer than ten pieces: the last one by id is held out.
  const few = new ReferenceCorpus(synthetic(4).reverse());
  assert.deepEqual(few.heldOut.map((p) => p.id), ["s03"]);
  assert.deepEqual(few.trainForHeldOut.map((p) => p.id), ["s00", "s01", "s02"]);
});

Deno.test("ReferenceCorpus drops pieces without notes and rejects a corpus with none", () => {
  const [a, b] = synthetic(2);
  const ref = new ReferenceCorpus([a, { ...b, notes: [] }]);
  // One piece with notes: it is both the train piece and the held-out one.
  assert.deepEqual(ref.train, [a]);
  assert.deepEqual(ref.heldOut, [a]);
  assert.deepEqual(ref.trainForHeldOut, []);
  assert.throws(
    () => new ReferenceCorpus([{ ...a, notes: [] }]),
    /^Error: Cannot calibrate reward terms: the reference corpus has no piece with notes$/,
  );
  assert.throws(
    () => new ReferenceCorpus([]),
    /Cannot calibrate reward terms: the reference corpus has no piece with notes/,
  );
});

Deno.test("excerpts are crops of train pieces with the bucket's length", () => {
  const pieces = synthetic(30);
  const byId = new Map(pieces.map((p) => [p.id, p]));
  const ref = new ReferenceCorpus(pieces, { excerptsPerBucket: 24 });
  for (const bucket of [1, 2, 4]) {
    const excerpts = ref.excerpts(bucket);
    assert.equal(excerpts.length, 24);
    for (const excerpt of excerpts) {
      const source = byId.get(excerpt.id)!;
      assert.ok(ref.train.includes(source), `${excerpt.id} is not a train piece`);
      assert.ok(excerpt.notes.length >= 2, `${excerpt.notes.length} notes`);
      // Every piece is at least 5.9 s long, so a window of 4 s or less is full of music.
      const end = pieceEndSec(excerpt.notes);
      assert.ok(end <= bucket + 1e-9 && end > 0.9 * bucket, `${bucket} s excerpt ends at ${end}`);
      assert.ok(excerpt.notes.every((n) => n.startSec >= 0 && n.startSec < bucket));
      assert.ok(excerpt.beatsSec.every((t) => t >= 0 && t < bucket));
      assert.ok(isCropOf(excerpt, source, bucket), `${bucket} s excerpt of ${excerpt.id}`);
    }
    // Offsets are drawn at random: not every excerpt starts at the beginning of its piece.
    assert.ok(new Set(excerpts.map((e) => e.notes[0].startSec.toFixed(6))).size > 1);
  }
  // An excerpt longer than a piece is the whole piece.
  for (const excerpt of ref.excerpts(16)) {
    assert.deepEqual(excerpt.notes, byId.get(excerpt.id)!.notes);
  }
});

Deno.test("excerpts are deterministic, cached, and independent of the order buckets are asked for", () => {
  const pieces = synthetic(30);
  const a = new ReferenceCorpus(pieces, { excerptsPerBucket: 16 });
  const b = new ReferenceCorpus([...pieces].reverse(), { excerptsPerBucket: 16 });
  const a2 = a.excerpts(2), a4 = a.excerpts(4);
  const b4 = b.excerpts(4), b2 = b.excerpts(2);
  assert.deepEqual(a2, b2);
  assert.deepEqual(a4, b4);
  assert.equal(a.excerpts(2), a2);
  assert.deepEqual(a.excerpts(2, "heldOut"), b.excerpts(2, "heldOut"));
  assert.notDeepEqual(a.excerpts(2, "heldOut"), a2);
  // Another seed cuts other excerpts.
  const other = new ReferenceCorpus(pieces, { excerptsPerBucket: 16, seed: 2 });
  assert.notDeepEqual(other.excerpts(2), a2);
});

Deno.test("memo() computes once per key", () => {
  const ref = new ReferenceCorpus(synthetic(3));
  let calls = 0;
  const compute = () => ({ call: ++calls });
  const first = ref.memo("harmony|{}|4", compute);
  assert.equal(ref.memo("harmony|{}|4", compute), first);
  assert.equal(calls, 1);
  assert.deepEqual(ref.memo("harmony|{}|8", compute), { call: 2 });
});
