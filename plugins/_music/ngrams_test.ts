import assert from "node:assert/strict";
import { excessRepeatFlags, NgramSet, pitchNgramKeys } from "./ngrams.ts";

Deno.test("excessRepeatFlags() flags single notes and patterns past the allowed repeats", () => {
  assert.deepEqual(
    excessRepeatFlags([60, 60, 60, 60, 60, 60, 62], { patternLength: 1, maxRepeats: 4 }),
    [false, false, false, false, true, true, false],
  );
  // C-D five times: the 5th occurrence (positions 8, 9) is one too many.
  const cd = [60, 62, 60, 62, 60, 62, 60, 62, 60, 62];
  const flags = excessRepeatFlags(cd, { patternLength: 2, maxRepeats: 4 });
  assert.deepEqual(flags.map((f, i) => f ? i : -1).filter((i) => i >= 0), [8, 9]);
  assert.ok(excessRepeatFlags(cd, { patternLength: 2, maxRepeats: 5 }).every((f) => !f));
});

Deno.test("pitchNgramKeys() gives equal keys to equal n-grams, exact and hashed", () => {
  const short = pitchNgramKeys([60, 62, 60, 62], 2);
  assert.equal(short.length, 3);
  assert.equal(short[0], short[2]);
  assert.notEqual(short[0], short[1]);
  assert.equal(short[0], 60 * 128 + 62);
  const seq = [60, 62, 64, 65, 67, 69, 71, 72, 60, 62, 64, 65, 67, 69, 71, 72, 74];
  const long = pitchNgramKeys(seq, 8);
  assert.equal(long.length, 10);
  assert.equal(long[0], long[8]);
  assert.equal(new Set(long).size, 9); // only windows 0 and 8 repeat
  assert.ok(long.every((k) => Number.isSafeInteger(k) && k >= 0));
  assert.deepEqual(pitchNgramKeys([60], 2), []);
});

Deno.test("NgramSet keeps every added key through growth and nothing else", () => {
  const set = new NgramSet(10);
  const keys = Array.from({ length: 5000 }, (_, i) => i * 7919 * 1024 + (i % 3));
  for (const key of keys) set.add(key);
  for (const key of keys) set.add(key);
  assert.equal(set.size, 5000);
  assert.ok(keys.every((k) => set.has(k)));
  assert.ok(!set.has(1));
  assert.ok(!set.has(2 ** 53 - 2));
  set.add(0);
  assert.ok(set.has(0));
});
