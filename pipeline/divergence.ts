/**
 * Divergence is a failure. The runner watches the losses every stage records
 * with `ctx.metrics()`: a metric named `loss` or `loss/...` that is not
 * finite (NaN or ±Infinity) at {@linkcode MAX_NON_FINITE_STEPS} recorded steps
 * in a row fails the stage at once, and so does a stage that ends with one.
 * A single bad step (one batch that overflows, skipped by the plugin) is
 * tolerated; a model that stays broken is not. Only losses are watched: other
 * metrics may be undefined for a reason (the dissonance of an empty piece).
 *
 * @module
 */

import { DivergenceError } from "./plugin.ts";

/** Consecutive recorded steps with a non-finite loss after which a stage fails. */
export const MAX_NON_FINITE_STEPS = 3;

/** True for the metric names the runner watches: `loss` and `loss/...`. */
export function isLossMetric(name: string): boolean {
  return name === "loss" || name.startsWith("loss/");
}

/** How a stage's steps are named in messages: plain steps, or loop episodes (1-based). */
export interface StepNaming {
  /** True inside a loop body, where the step is the episode index (0-based). */
  episodes: boolean;
}

const stepName = (step: number, naming: StepNaming): string =>
  naming.episodes ? `episode ${step + 1}` : `step ${step}`;

/**
 * The likely cause of a divergence, named from the stage's params: a learning
 * rate when it has one (`lr`, `learningRate`), else a generic hint.
 *
 * @param params The stage's resolved params.
 * @returns A clause such as `likely cause: a learning rate too high ("lr" is 1000000000): lower it`.
 */
export function divergenceHint(params: Record<string, unknown>): string {
  const rate = Object.entries(params).find(([key, value]) =>
    /^(lr|learningRate|learning_rate)$/.test(key) && typeof value === "number"
  );
  const cause = rate
    ? `likely cause: a learning rate too high ("${rate[0]}" is ${rate[1]}): lower it`
    : "likely cause: a learning rate too high, or inputs that are not finite";
  return `${cause}; nothing of this stage was cached`;
}

/** Tracks non-finite losses per stage label and throws {@linkcode DivergenceError}. */
export class DivergenceWatch {
  #bad = new Map<string, { steps: number[]; names: Set<string>; value: number }>();

  /**
   * Records one `ctx.metrics()` call.
   *
   * @param label The stage label (`pretrain`, or `finetune/update` in a loop).
   * @param step The step the plugin gave.
   * @param values The values it recorded.
   * @param options How steps are named, and the hint for the message.
   * @throws {DivergenceError} At the {@linkcode MAX_NON_FINITE_STEPS}-th step in a row with a
   *   non-finite loss.
   */
  record(
    label: string,
    step: number,
    values: Record<string, number>,
    options: StepNaming & { hint: string },
  ): void {
    const losses = Object.entries(values).filter(([name]) => isLossMetric(name));
    if (losses.length === 0) return;
    const bad = losses.filter(([, value]) => !Number.isFinite(value));
    if (bad.length === 0) {
      this.#bad.delete(label);
      return;
    }
    const run = this.#bad.get(label) ?? { steps: [], names: new Set<string>(), value: bad[0][1] };
    this.#bad.set(label, run);
    if (run.steps.at(-1) !== step) run.steps.push(step);
    for (const [name] of bad) run.names.add(name);
    if (run.steps.length < MAX_NON_FINITE_STEPS) return;
    const first = run.steps[0];
    const names = [...run.names].map((n) => `"${n}"`).join(", ");
    throw new DivergenceError(
      `training diverged at ${stepName(first, options)}: ${names} ${
        run.names.size > 1 ? "were" : "was"
      } ${run.value} for ${run.steps.length} ${
        options.episodes ? "episodes" : "recorded steps"
      } in a row (${stepName(first, options)} to ${stepName(step, options)}); ${options.hint}`,
      { step: first },
    );
  }

  /**
   * Checks the end of a stage: the last value of each loss it recorded must be finite.
   *
   * @param label The stage label.
   * @param history Everything the label recorded, in order.
   * @param options How steps are named, and the hint for the message.
   * @throws {DivergenceError} When a loss's last value is not finite.
   */
  checkEnd(
    label: string,
    history: readonly { step: number; values: Record<string, number> }[],
    options: StepNaming & { hint: string },
  ): void {
    this.#bad.delete(label);
    const last = new Map<string, { step: number; value: number }>();
    for (const { step, values } of history) {
      for (const [name, value] of Object.entries(values)) {
        if (isLossMetric(name)) last.set(name, { step, value });
      }
    }
    const bad = [...last].filter(([, { value }]) => !Number.isFinite(value));
    if (bad.length === 0) return;
    const [name, { step, value }] = bad[0];
    throw new DivergenceError(
      `training diverged: it ended with "${name}" ${value} at ${
        stepName(step, options)
      }; ${options.hint}`,
      { step },
    );
  }
}

/** True when `error` or one of its causes is a {@linkcode DivergenceError}. */
export function isDivergence(error: unknown): boolean {
  for (let e = error; e instanceof Error; e = e.cause) {
    if (e instanceof DivergenceError) return true;
  }
  return false;
}
