/**
 * A reward term made of raw parts calibrated on the reference corpus (see
 * `plugins/_music/calibration.ts` for the formula and `plugins/_music/reference.ts`
 * for the excerpts). The built-in terms are all written with it.
 *
 * @module
 */

import {
  calibratePart,
  combineParts,
  type PartCalibration,
  type PartSpec,
} from "../_music/calibration.ts";
import type { RewardContext, RewardTerm } from "../_music/components.ts";
import {
  bucketOf,
  EXCERPT_BLOCK,
  pieceDurationSec,
  type ReferenceCorpus,
} from "../_music/reference.ts";
import type { Piece } from "../_music/types.ts";

/** Who is being measured: scored pieces, or real excerpts during calibration. */
export type Role = "scored" | "reference";

/** How to build a calibrated term. */
export interface CalibratedTermOptions {
  /** Plugin name, for error messages and (unless `memoKey` is given) the calibration memo. */
  name: string;
  /** Key of the calibration memo when one plugin calibrates several groups of parts. */
  memoKey?: string;
  /** The params, for the calibration memo (a term with other params calibrates anew). */
  params: Record<string, unknown>;
  /** The parts, their weights and directions. */
  specs: PartSpec[];
  /**
   * Raw part values of a batch (NaN where undefined). `role` says whether the
   * batch is scored or is real excerpts being measured for calibration, and
   * `source` which excerpts those are (train or held-out pieces).
   */
  parts(
    pieces: readonly Piece[],
    context: RewardContext,
    role: Role,
    source: "train" | "heldOut",
  ): Record<string, number>[];
}

/**
 * Calibrations of a term's parts for one length bucket, memoised on the reference.
 *
 * @returns Calibration by part name.
 */
export function calibrationsFor(
  options: CalibratedTermOptions,
  reference: ReferenceCorpus,
  context: RewardContext,
  bucketSec: number,
): Record<string, PartCalibration> {
  const key = `${options.memoKey ?? options.name}|${JSON.stringify(options.params)}|${bucketSec}`;
  return reference.memo(key, () => {
    const out: Record<string, PartCalibration> = {};
    for (const source of ["train", "heldOut"] as const) {
      const specs = options.specs.filter((spec) => (spec.excerpts ?? "train") === source);
      if (specs.length === 0) continue;
      const excerpts = reference.excerpts(bucketSec, source);
      const raw: Record<string, number>[] = [];
      // In blocks of distinct pieces, as they were drawn (batch-level parts such as variety).
      for (let i = 0; i < excerpts.length; i += EXCERPT_BLOCK) {
        const batch = excerpts.slice(i, i + EXCERPT_BLOCK);
        raw.push(...options.parts(batch, context, "reference", source));
      }
      for (const spec of specs) out[spec.name] = calibratePart(raw.map((r) => r[spec.name]), spec);
    }
    return out;
  });
}

/**
 * Builds a calibrated reward term: each piece's raw parts are scored against
 * real excerpts of its own length bucket and combined by weight. A piece
 * without notes scores 0.
 *
 * @param options The term's parts.
 * @returns The term.
 * @throws {Error} From `score()`, when the context has no reference corpus.
 */
export function calibratedTerm(options: CalibratedTermOptions): RewardTerm {
  // One entry per weight param (two parts may share one).
  const byParam = new Map(options.specs.map((s) => [s.param ?? `${s.name}Weight`, s.weight]));
  const weights = [...byParam.values()];
  if (!weights.every((w) => Number.isFinite(w) && w >= 0) || weights.every((w) => w === 0)) {
    throw new Error(
      `Cannot create reward term "${options.name}": ${
        [...byParam.keys()].join(", ")
      } must be >= 0 and not all 0, received ${weights.join(", ")}`,
    );
  }
  return {
    score(pieces, context) {
      const reference = context?.reference;
      if (!reference) {
        throw new Error(
          `"${options.name}" is calibrated on real music: give reward/composite (or eval/policies) a "corpus" input`,
        );
      }
      const raw = options.parts(pieces, context, "scored", "train");
      // One memo lookup per length bucket of the batch, not per piece (its key serialises params).
      const byBucket = new Map<number, Record<string, PartCalibration>>();
      return pieces.map((piece, i) => {
        if (piece.notes.length === 0) return 0;
        const bucket = bucketOf(pieceDurationSec(piece));
        let calibrations = byBucket.get(bucket);
        if (!calibrations) {
          calibrations = calibrationsFor(options, reference, context, bucket);
          byBucket.set(bucket, calibrations);
        }
        return combineParts(raw[i], options.specs, calibrations);
      });
    },
  };
}
