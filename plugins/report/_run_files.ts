/**
 * Reading what the run recorded so far: `manifest.json`, `metrics.json`
 * (grouped for plotting) and `events.jsonl`.
 *
 * @module
 */

import { errorMessage, type StageContext } from "../../mod.ts";
import { join } from "node:path";

/** Metrics of a run as the runner writes `metrics.json`: stage label to steps. */
export type RunMetrics = Record<string, Array<{ step: number; values: Record<string, number> }>>;

/** One plot's worth of metrics: one stage label, one namespace, one line per metric. */
export interface MetricGroup {
  /** Stage label, e.g. `pretrain` or `finetune/update`. */
  label: string;
  /** Part of the metric names before "/", e.g. `loss`, `reward`. */
  namespace: string;
  /** Metric name to `[step, value]` points, in first-appearance order. */
  series: Map<string, Array<[number, number]>>;
}

/**
 * Groups a run's metrics for plotting: per stage label, per namespace (the
 * part before the first "/"; a name without "/" is its own namespace), with
 * namespaces in the order they first appear.
 *
 * @param metrics The run's metrics.
 * @returns One group per stage label and namespace.
 * @example
 * ```ts
 * import { groupMetrics } from "./html.ts";
 * const groups = groupMetrics({
 *   pretrain: [{ step: 1, values: { "loss/train": 2, "nll/validation": 2.5 } }],
 * });
 * console.log(groups.map((g) => g.namespace)); // ["loss", "nll"]
 * ```
 */
export function groupMetrics(metrics: RunMetrics): MetricGroup[] {
  const groups: MetricGroup[] = [];
  for (const [label, entries] of Object.entries(metrics)) {
    const byNamespace = new Map<string, MetricGroup>();
    for (const entry of entries) {
      for (const [name, value] of Object.entries(entry.values ?? {})) {
        const slash = name.indexOf("/");
        const namespace = slash > 0 ? name.slice(0, slash) : name;
        let group = byNamespace.get(namespace);
        if (!group) {
          group = { label, namespace, series: new Map() };
          byNamespace.set(namespace, group);
          groups.push(group);
        }
        let points = group.series.get(name);
        if (!points) group.series.set(name, points = []);
        points.push([entry.step, typeof value === "number" ? value : NaN]);
      }
    }
  }
  return groups;
}

/** True when a value has the shape the runner gives `metrics.json`. */
function isRunMetrics(value: unknown): value is RunMetrics {
  return isObject(value) && Object.values(value).every((list) =>
    Array.isArray(list) &&
    list.every((e) => isObject(e) && typeof e.step === "number" && isObject(e.values))
  );
}

/** True for a plain object (not null, not a list). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export async function readJsonFile(path: string): Promise<unknown> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`Cannot read "${path}": ${errorMessage(error)}`);
  }
}

/** The run's metrics: `metrics.json`, or the metric events of `events.jsonl` when it is unusable. */
export async function readRunMetrics(ctx: StageContext): Promise<RunMetrics> {
  const path = join(ctx.runDir, "metrics.json");
  let value: unknown;
  try {
    value = await readJsonFile(path);
  } catch (error) {
    ctx.log.warn((error as Error).message);
  }
  if (isRunMetrics(value)) return value;
  if (value !== undefined) {
    ctx.log.warn(
      `Cannot plot "${path}": it does not map stage labels to lists of {step, values}; plotting the metrics of events.jsonl instead`,
    );
  }
  const fromEvents: RunMetrics = {};
  for (const event of await readEvents(ctx)) {
    if (event.type !== "metric" || typeof event.stage !== "string") continue;
    if (typeof event.step !== "number" || !isObject(event.values)) continue;
    (fromEvents[event.stage] ??= []).push({
      step: event.step,
      values: event.values as Record<string, number>,
    });
  }
  return fromEvents;
}

/** Lines of `events.jsonl` that parse as objects. */
export async function readEvents(ctx: StageContext): Promise<Array<Record<string, unknown>>> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(ctx.runDir, "events.jsonl"));
  } catch {
    return [];
  }
  const events: Array<Record<string, unknown>> = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      const event = JSON.parse(line);
      if (isObject(event)) events.push(event);
    } catch {
      // A line cut off by a killed run: skip it.
    }
  }
  return events;
}
