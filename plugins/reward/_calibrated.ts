/**
 * A reward term made of raw parts calibrated on the reference corpus (see
 * `plugins/_music/calibration.ts` for the formula and `plugins/_music/reference.ts`
 * for the excerpts). The built-in terms are all written with it.
 *
 * @module
 */

import { calibratePart, combineParts, type PartCalibration, type PartSpec } from "../_music/calibration.ts";
import type { RewardContext, RewardTerm } from "../_music/components.ts";
import { bucketOf, pieceDurationSec, type ReferenceCorpus } from "../_music/reference.ts";
import type { Piece } from "../_music/types.ts";

/** Who is being measured: scored pieces, or real excerpts during calibration. */
export type Role = "scored" | "reference";

/** How to build a calibrated term. */
export interface CalibratedTermOptions {
  /** Plugin name, for error messages and the calibration memo. */
  name: string;
  /** The params, for the calibration memo (a term with other params calibrates anew). */
  params: Record<string, unknown>;
  /** The parts, their weights and directions. */
  specs: PartSpec[];
  /**
   * Raw part values of a batch (NaN where undefined). `role` says whether the
   * batch is scored or is real excerpts being measured for calibration.
   */
  parts(pieces: readonly Piece[], context: RewardContext, role: Role): Record<string, number>[];
  /** Which real excerpts calibrate the term: train (default) or held-out pieces. */
  excerpts?: "train" | "heldOut";
}

/** Real excerpts are measured in batches of this size (batch-level parts such as variety). */
export const CALIBRATION_BATCH = 32;

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
  const key = `${options.name}|${JSON.stringify(options.params)}|${bucketSec}`;
  return reference.memo(key, () => {
    const excerpts = reference.excerpts(bucketSec, options.excerpts ?? "train");
    const raw: Record<string, number>[] = [];
    for (let i = 0; i < excerpts.length; i += CALIBRATION_BATCH) {
      raw.push(...options.parts(excerpts.slice(i, i + CALIBRATION_BATCH), context, "reference"));
    }
    const out: Record<string, PartCalibration> = {};
    for (const spec of options.specs) {
      out[spec.name] = calibratePart(raw.map((r) => r[spec.name]), spec);
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
  const weights = options.specs.map((s) => s.weight);
  if (!weights.every((w) => Number.isFinite(w) && w >= 0) || weights.every((w) => w === 0)) {
    throw new Error(
      `Cannot create reward term "${options.name}": ${
        options.specs.map((s) => `${s.name}Weight`).join(", ")
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
      const raw = options.parts(pieces, context, "scored");
      return pieces.map((piece, i) => {
        if (piece.notes.length === 0) return 0;
        const bucket = bucketOf(pieceDurationSec(piece));
        const calibrations = calibrationsFor(options, reference, context, bucket);
        return combineParts(raw[i], options.specs, calibrations);
      });
    },
  };
}
