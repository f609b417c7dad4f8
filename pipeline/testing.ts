/**
 * Helpers for testing plugins outside a graph: a context that logs to memory
 * and params with defaults filled in.
 *
 * @module
 */

import type { Plugin, StageContext } from "./plugin.ts";
import { Components, type Registry } from "./registry.ts";
import { createRng } from "./rng.ts";
import type { ParamsSchema } from "./schema.ts";

/** A stage context for tests, plus what the plugin logged and measured. */
export interface TestContext extends StageContext {
  logs: { level: string; message: string }[];
  recorded: { step: number; values: Record<string, number> }[];
  notes: Record<string, unknown>;
}

/**
 * Makes a context for calling `plugin.run()` directly in a test.
 *
 * @param options Seed (default 1), run and work directories (default: a new temp dir).
 * @returns A context whose logs and metrics are kept in arrays.
 */
export function testContext(
  options: {
    seed?: number;
    dir?: string;
    plugin?: string;
    signal?: AbortSignal;
    /** Where `ctx.component()` finds plugins by name (default: none, paths only). */
    registry?: Registry;
  } = {},
): TestContext {
  const components = new Components(
    options.registry ?? { names: () => [], load: () => Promise.resolve(undefined) },
  );
  const dir = options.dir ?? Deno.makeTempDirSync({ prefix: "harmonyrl-test-" });
  const logs: TestContext["logs"] = [];
  const recorded: TestContext["recorded"] = [];
  const notes: Record<string, unknown> = {};
  const memo = new Map<string, unknown>();
  const log = (level: string) => (message: string) => logs.push({ level, message });
  const seed = options.seed ?? 1;
  return {
    stage: "test",
    plugin: options.plugin ?? "test",
    log: { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") },
    rng: createRng(seed),
    seed,
    signal: options.signal ?? new AbortController().signal,
    runDir: dir,
    workDir: dir,
    backend: "cpu",
    component: (spec, kind) => components.create(spec, kind),
    componentSpec: async (spec, kind) => {
      const { spec: full, url } = await components.resolve(spec, kind);
      return { spec: full, url };
    },
    progress() {},
    metrics(step, values) {
      recorded.push({ step, values });
    },
    note(key, value) {
      notes[key] = value;
    },
    noted: (key) => notes[key],
    memo: <T>(key: string, compute: () => T): T => {
      if (!memo.has(key)) memo.set(key, compute());
      return memo.get(key) as T;
    },
    logs,
    recorded,
    notes,
  };
}

/**
 * Returns the plugin's default params overridden by `overrides` (no validation,
 * no component creation: pass created components in `overrides`).
 */
export function defaultParams(
  plugin: Plugin,
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(plugin.params as ParamsSchema)) {
    if ("default" in spec && spec.default !== undefined) out[key] = structuredClone(spec.default);
  }
  return { ...out, ...overrides };
}
