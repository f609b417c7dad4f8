/**
 * Test helpers for the built-in plugins: the runner's test context with the
 * built-in registry behind `ctx.component()`, and default params.
 *
 * @module
 */

import {
  defaultParams,
  type TestContext,
  testContext as bareContext,
} from "../pipeline/testing.ts";
import { registry } from "./registry.ts";

export { defaultParams, type TestContext };

/**
 * A stage context for calling a built-in plugin's `run()` in a test; its
 * `ctx.component()` finds the built-in plugins by name.
 *
 * @param options Seed (default 1), run and work directories (default: a new temp dir).
 * @returns A context whose logs and metrics are kept in arrays.
 */
export function testContext(
  options: Omit<Parameters<typeof bareContext>[0] & object, "registry"> = {},
): TestContext {
  return bareContext({ ...options, registry });
}
