/**
 * Components of a validated graph made real: the canonical form of resolved
 * params for cache keys, each component's full spec (what its `create()`
 * receives as `self`), and the params a plugin's `run` or `create` receives.
 *
 * @module
 */

import type { ResolvedComponent } from "./graph.ts";
import type { Plugin } from "./plugin.ts";
import type { FullComponentRef, ParamsSchema, WeightedComponent } from "./schema.ts";

/** Canonical form of resolved params for the cache key: components by name and version. */
export function canonicalParams(params: Record<string, unknown>): unknown {
  const one = (value: unknown): unknown => {
    if (isResolvedComponent(value)) {
      return {
        use: value.plugin.name,
        version: value.plugin.version,
        weight: value.weight,
        with: canonicalParams(value.params),
        ...(value.sourceHash ? { source: value.sourceHash } : {}),
      };
    }
    if (Array.isArray(value)) return value.map(one);
    return value;
  };
  return Object.fromEntries(Object.entries(params).map(([k, v]) => [k, one(v)]));
}

export function isResolvedComponent(value: unknown): value is ResolvedComponent {
  return typeof value === "object" && value !== null && "plugin" in value && "use" in value &&
    "params" in value;
}

/**
 * A resolved component's full spec, as its `create()` receives it and as
 * checkpoints record it: a built-in by name, a user module by absolute path.
 */
export function fullSpec(c: ResolvedComponent): FullComponentRef {
  const one = (value: unknown): unknown =>
    isResolvedComponent(value)
      ? { ...fullSpec(value), ...(value.weight !== 1 ? { weight: value.weight } : {}) }
      : Array.isArray(value)
      ? value.map(one)
      : value;
  return {
    use: c.path ?? c.use,
    with: Object.fromEntries(Object.entries(c.params).map(([k, v]) => [k, one(v)])),
  };
}

/** Creates the components named in params (recursively), as plugins receive them. */
export function instantiate(
  plugin: Plugin,
  params: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(plugin.params as ParamsSchema)) {
    const value = params[key];
    if (spec.type === "component") {
      const c = value as ResolvedComponent;
      out[key] = c.plugin.create(instantiate(c.plugin, c.params), fullSpec(c));
    } else if (spec.type === "components") {
      out[key] = (value as ResolvedComponent[]).map((c): WeightedComponent => ({
        name: c.plugin.name,
        weight: c.weight,
        component: c.plugin.create(instantiate(c.plugin, c.params), fullSpec(c)),
      }));
    } else {
      out[key] = value;
    }
  }
  return out;
}
