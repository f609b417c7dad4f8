/**
 * `rollout/sample`: samples token sequences from a model (with
 * `plugins/_tf/sampler.ts`), decodes them into pieces with the checkpoint's
 * tokenizer, and stores them with their log-probabilities (`rolloutsCodec`).
 *
 * @module
 */

import {
  type ArtifactCodec,
  type ComponentRef,
  definePlugin,
  p,
  type Piece,
  port,
  type Rng,
  type StageContext,
} from "../../mod.ts";
import { type BatchStats, batchStats, collapseReason } from "../_music/collapse.ts";
import type { TokenCorpus, Tokenizer } from "../_music/components.ts";
import type { Split } from "../_music/types.ts";
import type { Rollouts } from "../_music/artifacts.ts";
import { liveModelOf } from "../_tf/checkpoint.ts";
import { type ModelCheckpoint } from "../_tf/model.ts";
import { samplePolicy } from "../_tf/sampler.ts";

export type { Rollouts };

interface RolloutsIndex {
  format: "harmonyrl-rollouts";
  version: 1;
  primerLen: number;
  sampling: Rollouts["sampling"];
  tokenizer: unknown;
  modelStep: number;
  /** Sequence i is `tokens[tokenOffsets[i] .. tokenOffsets[i+1]]`; log-probs likewise. */
  tokenOffsets: number[];
  logProbOffsets: number[];
  pieces: {
    id: string;
    tempoBpm: number;
    beatsPerBar: number;
    source?: string;
    notes: number;
    beats: number;
  }[];
}

function concat<T extends Int32Array | Float32Array | Float64Array>(
  parts: ArrayLike<number>[],
  make: (n: number) => T,
): { data: T; offsets: number[] } {
  const offsets = [0];
  for (const part of parts) offsets.push(offsets[offsets.length - 1] + part.length);
  const data = make(offsets[offsets.length - 1]);
  parts.forEach((part, i) => data.set(part, offsets[i]));
  return { data, offsets };
}

function bytesOf(a: Int32Array | Float32Array | Float64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

async function readTyped<T>(
  path: string,
  width: number,
  make: (b: ArrayBuffer, n: number) => T,
): Promise<T> {
  const bytes = await Deno.readFile(path);
  if (bytes.byteLength % width !== 0) {
    throw new Error(`Cannot read "${path}": its size is not a multiple of ${width} bytes`);
  }
  const copy = bytes.slice().buffer;
  return make(copy, bytes.byteLength / width);
}

/**
 * Codec of the `rollouts` artifact: `index.json` plus little-endian binaries:
 * `tokens.i32`, `logprobs.f32`, `sampling_logprobs.f32`, `notes.f64` (pitch,
 * velocity, startSec, endSec per note) and `beats.f64`.
 */
export const rolloutsCodec: ArtifactCodec<Rollouts> = {
  async save(r, dir) {
    const tokens = concat(r.tokens, (n) => new Int32Array(n));
    const lp = concat(r.logProbs, (n) => new Float32Array(n));
    const slp = concat(r.samplingLogProbs, (n) => new Float32Array(n));
    const notes = concat(
      r.pieces.map((piece) =>
        piece.notes.flatMap((n) => [n.pitch, n.velocity, n.startSec, n.endSec])
      ),
      (n) => new Float64Array(n),
    );
    const beats = concat(r.pieces.map((piece) => piece.beatsSec), (n) => new Float64Array(n));
    const index: RolloutsIndex = {
      format: "harmonyrl-rollouts",
      version: 1,
      primerLen: r.primerLen,
      sampling: r.sampling,
      tokenizer: r.tokenizer ?? null,
      modelStep: r.modelStep,
      tokenOffsets: tokens.offsets,
      logProbOffsets: lp.offsets,
      pieces: r.pieces.map((piece) => ({
        id: piece.id,
        tempoBpm: piece.tempoBpm,
        beatsPerBar: piece.beatsPerBar,
        ...(piece.source === undefined ? {} : { source: piece.source }),
        notes: piece.notes.length,
        beats: piece.beatsSec.length,
      })),
    };
    await Deno.writeFile(`${dir}/tokens.i32`, bytesOf(tokens.data));
    await Deno.writeFile(`${dir}/logprobs.f32`, bytesOf(lp.data));
    await Deno.writeFile(`${dir}/sampling_logprobs.f32`, bytesOf(slp.data));
    await Deno.writeFile(`${dir}/notes.f64`, bytesOf(notes.data));
    await Deno.writeFile(`${dir}/beats.f64`, bytesOf(beats.data));
    await Deno.writeTextFile(`${dir}/index.json`, JSON.stringify(index));
  },
  async load(dir) {
    const index = JSON.parse(await Deno.readTextFile(`${dir}/index.json`)) as RolloutsIndex;
    if (index?.format !== "harmonyrl-rollouts" || index.version !== 1) {
      throw new Error(`Cannot read rollouts "${dir}": not a harmonyrl-rollouts version 1 index`);
    }
    const tokens = await readTyped(`${dir}/tokens.i32`, 4, (b, n) => new Int32Array(b, 0, n));
    const lp = await readTyped(`${dir}/logprobs.f32`, 4, (b, n) => new Float32Array(b, 0, n));
    const slp = await readTyped(
      `${dir}/sampling_logprobs.f32`,
      4,
      (b, n) => new Float32Array(b, 0, n),
    );
    const notes = await readTyped(`${dir}/notes.f64`, 8, (b, n) => new Float64Array(b, 0, n));
    const beats = await readTyped(`${dir}/beats.f64`, 8, (b, n) => new Float64Array(b, 0, n));
    const count = index.tokenOffsets.length - 1;
    const last = (o: number[]) => o[o.length - 1];
    const noteTotal = index.pieces.reduce((a, q) => a + q.notes, 0);
    const beatTotal = index.pieces.reduce((a, q) => a + q.beats, 0);
    if (
      last(index.tokenOffsets) !== tokens.length || last(index.logProbOffsets) !== lp.length ||
      lp.length !== slp.length || noteTotal * 4 !== notes.length || beatTotal !== beats.length ||
      index.logProbOffsets.length !== count + 1
    ) {
      throw new Error(`Cannot read rollouts "${dir}": the binary files do not match index.json`);
    }
    let noteAt = 0, beatAt = 0;
    const pieces: Piece[] = index.pieces.map((q) => {
      const piece: Piece = {
        id: q.id,
        tempoBpm: q.tempoBpm,
        beatsPerBar: q.beatsPerBar,
        notes: Array.from({ length: q.notes }, (_, i) => {
          const o = (noteAt + i) * 4;
          return {
            pitch: notes[o],
            velocity: notes[o + 1],
            startSec: notes[o + 2],
            endSec: notes[o + 3],
          };
        }),
        beatsSec: Array.from(beats.subarray(beatAt, beatAt + q.beats)),
      };
      if (q.source !== undefined) piece.source = q.source;
      noteAt += q.notes;
      beatAt += q.beats;
      return piece;
    });
    const slices = <T extends Int32Array | Float32Array>(a: T, o: number[]) =>
      Array.from({ length: count }, (_, i) => a.slice(o[i], o[i + 1]) as T);
    return {
      tokens: slices(tokens, index.tokenOffsets),
      primerLen: index.primerLen,
      logProbs: slices(lp, index.logProbOffsets),
      samplingLogProbs: slices(slp, index.logProbOffsets),
      sampling: index.sampling,
      pieces,
      tokenizer: index.tokenizer,
      modelStep: index.modelStep,
    };
  },
};

/** Primer prompts: BOS-first beginnings of `count` sequences of the split, drawn with `rng`. */
function primerPrompts(
  corpus: TokenCorpus,
  split: Split,
  primerLen: number,
  count: number,
  rng: Rng,
): Int32Array[] {
  const candidates: Int32Array[] = [];
  for (let i = 0; i < corpus.ids.length; i++) {
    const length = corpus.offsets[i + 1] - corpus.offsets[i];
    if (corpus.splits[i] === split && length > primerLen + 1) {
      candidates.push(corpus.tokens.subarray(corpus.offsets[i], corpus.offsets[i] + primerLen + 1));
    }
  }
  if (candidates.length === 0) {
    throw new Error(
      `Cannot take primers: no "${split}" sequence of the primer corpus is longer than primerLen + 1 = ${
        primerLen + 1
      } tokens`,
    );
  }
  return Array.from(
    { length: count },
    () => Int32Array.from(candidates[rng.int(candidates.length)]),
  );
}

export default definePlugin({
  name: "rollout/sample",
  kind: "rollout",
  version: "1.0.0",
  description:
    "Samples token sequences from a model (temperature, top-k, top-p) with per-token log-probabilities and decodes them into pieces",
  params: {
    count: p.integer({ default: 16, min: 1, description: "Sequences to sample (one batch)" }),
    length: p.integer({
      default: 512,
      min: 1,
      description: "Tokens to sample after BOS and the primer (fewer when EOS is sampled)",
    }),
    temperature: p.number({
      default: 1,
      min: 0,
      description: "Divides the logits; below 1 is more conservative, 0 is greedy",
    }),
    topK: p.integer({
      default: 0,
      min: 0,
      description: "Sample among the k most likely tokens; 0 = off",
    }),
    topP: p.number({
      default: 1,
      min: 0,
      max: 1,
      description:
        "Nucleus sampling: keep the most likely tokens up to this total probability; 1 = off",
    }),
    primerLen: p.integer({
      default: 0,
      min: 0,
      description:
        "Tokens after BOS taken from the start of a primer-corpus sequence; 0 = start from BOS",
    }),
    primerSplit: p.string({
      default: "validation",
      enum: ["train", "validation", "test"],
      description: "Which split of the primer corpus the primers come from",
    }),
    batchSize: p.integer({
      default: 0,
      min: 0,
      description: "Sequences decoded together; 0 = all of count at once",
    }),
  },
  inputs: {
    model: port<ModelCheckpoint>({ type: "model", description: "The policy to sample from" }),
    primer: port<TokenCorpus>({
      type: "token-corpus",
      optional: true,
      description: "Corpus whose sequence beginnings prime the samples (needs primerLen > 0)",
    }),
  },
  outputs: {
    rollouts: {
      type: "rollouts",
      description: "Sampled tokens, their log-probabilities and decoded pieces",
      codec: rolloutsCodec as ArtifactCodec,
    },
  },
  async run(ctx, inputs, params) {
    const { model: ckpt, primer } = inputs;
    if (params.primerLen > 0 && primer === undefined) {
      throw new Error(
        `Cannot sample: primerLen is ${params.primerLen} but no "primer" input is connected`,
      );
    }
    if (primer !== undefined && primer.vocabSize !== ckpt.vocabSize) {
      throw new Error(
        `Cannot sample: the primer corpus has ${primer.vocabSize} token ids, the model ${ckpt.vocabSize}`,
      );
    }
    const tokenizer = await ctx.component<Tokenizer>(ckpt.tokenizer as ComponentRef, "tokenizer");
    const prompts = primer === undefined
      ? Array.from({ length: params.count }, () => Int32Array.of(tokenizer.special.bos))
      : primerPrompts(primer, params.primerSplit as Split, params.primerLen, params.count, ctx.rng);
    // The live policy when an RL update in this process made the checkpoint,
    // else a model built once per checkpoint; shared, so not disposed here.
    const model = await liveModelOf(ctx, ckpt);
    const started = performance.now();
    const sample = await samplePolicy(model, {
      count: params.count,
      length: params.length,
      rng: ctx.rng,
      temperature: params.temperature,
      topK: params.topK,
      topP: params.topP,
      prompts,
      stopToken: tokenizer.special.eos,
      batchSize: params.batchSize === 0 ? undefined : params.batchSize,
      signal: ctx.signal,
      onProgress: (done, total) => {
        const sec = (performance.now() - started) / 1000;
        ctx.progress({ done, total, unit: "tokens", info: { "tok/s": Math.round(done / sec) } });
      },
    });
    const sampled = sample.logProbs.reduce((a, l) => a + l.length, 0);
    const sec = (performance.now() - started) / 1000;
    const prefix = ctx.iteration === undefined ? ctx.stage : `${ctx.stage}-${ctx.iteration}`;
    const pieces = sample.tokens.map((t, i) => tokenizer.decode(t, { id: `${prefix}-${i}` }));
    const meanLogProb = sample.logProbs.reduce((a, l) => a + l.reduce((x, y) => x + y, 0), 0) /
      Math.max(1, sampled);
    const stats = batchStats(pieces, { meanLogProb: sampled > 0 ? meanLogProb : undefined });
    ctx.metrics(ctx.iteration ?? 0, {
      "rollout/tokens": sampled,
      "rollout/tokensPerSec": sampled / Math.max(sec, 1e-9),
      "rollout/meanLogProb": meanLogProb,
      "rollout/meanNotes": stats.notesPerPiece,
      "rollout/distinctNgrams": stats.distinctNgramRatio,
    });
    flagCollapse(ctx, stats, params.length);
    // Inside a loop this would print every episode; the loop's progress line shows the figures.
    (ctx.iteration === undefined ? ctx.log.info : ctx.log.debug)(
      `Sampled ${sampled} tokens in ${sec.toFixed(1)} s (${Math.round(sampled / sec)} tok/s)`,
    );
    const rollouts: Rollouts = {
      tokens: sample.tokens,
      primerLen: sample.promptLength - 1,
      logProbs: sample.logProbs,
      samplingLogProbs: sample.samplingLogProbs,
      sampling: { temperature: params.temperature, topK: params.topK, topP: params.topP },
      pieces,
      tokenizer: ckpt.tokenizer,
      modelStep: ckpt.step,
    };
    return { rollouts };
  },
});

/**
 * Warns (once per run and stage) and notes in the manifest when the sampled
 * batch looks collapsed: see plugins/_music/collapse.ts for the signs.
 */
function flagCollapse(ctx: StageContext, stats: BatchStats, tokensSampled: number): void {
  const reason = collapseReason(stats, { tokensSampled });
  if (reason === undefined) return;
  const episode = (ctx.iteration ?? 0) + 1;
  // The span so far is what this stage noted at earlier episodes, so a loop warns once.
  const seen = ctx.noted("collapse") as { first: number; episodes: number } | undefined;
  const span = seen
    ? { first: seen.first, last: episode, episodes: seen.episodes + 1 }
    : { first: episode, last: episode, episodes: 1 };
  if (!seen) {
    ctx.log.warn(
      `The policy looks collapsed${
        ctx.iteration === undefined ? "" : ` at episode ${episode}`
      }: ${reason}; if it is being fine-tuned, lower the update's learning rate or raise its klCoef`,
    );
  }
  ctx.note("collapse", { ...span, reason });
}
