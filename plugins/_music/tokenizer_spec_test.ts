import assert from "node:assert/strict";
import { createTokenizerFromSpec } from "./tokenizer_spec.ts";

Deno.test("createTokenizerFromSpec() builds a tokenizer plugin from its spec with defaults filled in", async () => {
  const standard = await createTokenizerFromSpec({ use: "tokenizer/performance", with: {} });
  assert.equal(standard.vocabSize, 391);
  const fewerVelocities = await createTokenizerFromSpec({
    use: "tokenizer/performance",
    with: { velocityBins: 16 },
  });
  assert.equal(fewerVelocities.vocabSize, 375);
  const remi = await createTokenizerFromSpec({ use: "tokenizer/remi" });
  assert.equal(remi.name, "tokenizer/remi");
  await assert.rejects(
    () => createTokenizerFromSpec({ use: "tokenizer/nope" }),
    /Cannot create tokenizer "tokenizer\/nope": the plugin module cannot be loaded/,
  );
  await assert.rejects(
    () => createTokenizerFromSpec({ use: "model/lstm" }),
    /Cannot create tokenizer "model\/lstm": expected "tokenizer\/<name>"/,
  );
  await assert.rejects(() => createTokenizerFromSpec({}), /has no "use" name/);
});
