import assert from "node:assert/strict";
import { durationText } from "./_sections.ts";

Deno.test("durationText() rounds before splitting into minutes and hours", () => {
  assert.equal(durationText(4.213), "4.21 s");
  assert.equal(durationText(12.46), "12.5 s");
  assert.equal(durationText(59.97), "1 min 0 s");
  assert.equal(durationText(299.6), "5 min 0 s"); // was "4 min 60 s"
  assert.equal(durationText(301.4), "5 min 1 s");
  assert.equal(durationText(3599.7), "1 h 0 min");
  assert.equal(durationText(7390), "2 h 3 min");
  assert.equal(durationText(undefined), "");
  assert.equal(durationText(Number.NaN), "");
});
