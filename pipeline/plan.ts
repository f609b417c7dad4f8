/**
 * Planning helpers of `runPipeline`: what describes a loop in its cache key,
 * the plugins' fingerprints and preflight checks, references out of a loop
 * body, and which stages a partial run (`--only`, `--from`, `--until`) selects.
 *
 * @module
 */

import type { Graph, StageNode } from "./graph.ts";
import { canonicalParams, instantiate } from "./instantiate.ts";
import { errorMessage } from "./plugin.ts";
import type { RunOptions } from "./run.ts";

/** Describes a stage's params, inputs and body for the key (loops hash their whole body). */
export function loopExtra(node: StageNode, sources: Map<string, unknown>): unknown {
  const loop = node.loop!;
  return {
    episodes: loop.episodes,
    carry: loop.carry,
    body: loop.body.map((s) => ({
      name: s.name,
      plugin: s.plugin!.name,
      version: s.plugin!.version,
      source: s.sourceHash,
      params: canonicalParams(s.params),
      inputs: s.inputs,
      sources: sources.get(`${node.name}/${s.name}`),
    })),
  };
}

/**
 * What each stage reads besides its inputs, by stage label, from the plugins'
 * `fingerprint` hooks. A hook that throws gives `{ unreadable: message }`: the
 * stage then runs and reports the problem itself.
 */
export async function fingerprints(graph: Graph): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  const one = async (label: string, node: StageNode) => {
    const plugin = node.plugin;
    if (!plugin?.fingerprint) return;
    try {
      out.set(label, await plugin.fingerprint(instantiate(plugin, node.params)));
    } catch (error) {
      out.set(label, { unreadable: errorMessage(error) });
    }
  };
  for (const node of graph.stages) {
    await one(node.name, node);
    for (const body of node.loop?.body ?? []) await one(`${node.name}/${body.name}`, body);
  }
  return out;
}

/** Outer references a loop needs: carry inits and body inputs that point outside the body. */
export function loopOuterRefs(node: StageNode): Map<string, { stage: string; output: string }> {
  const refs = new Map<string, { stage: string; output: string }>();
  const bodyNames = new Set(node.loop!.body.map((s) => s.name));
  for (const carry of Object.values(node.loop!.carry)) {
    refs.set(`${carry.init.stage}.${carry.init.output}`, carry.init);
  }
  for (const stage of node.loop!.body) {
    for (const ref of Object.values(stage.inputs)) {
      if (!bodyNames.has(ref.stage) && ref.stage !== node.name) {
        refs.set(`${ref.stage}.${ref.output}`, ref);
      }
    }
  }
  return refs;
}

/** Every outer reference a top-level stage reads, as "stage.output". */
export function outerRefs(node: StageNode): Map<string, { stage: string; output: string }> {
  if (node.loop) return loopOuterRefs(node);
  return new Map(Object.values(node.inputs).map((ref) => [`${ref.stage}.${ref.output}`, ref]));
}

/**
 * Runs the `preflight` of a stage (of each body stage for a loop): the first
 * problem as one line that names the stage and the `--set` path of the param.
 */
export async function preflight(node: StageNode): Promise<string | undefined> {
  const checks = node.loop
    ? node.loop.body.map((stage) => ({
      stage,
      label: `${node.name}/${stage.name}`,
      path: `stages.${node.name}.loop.stages.${stage.name}.with`,
    }))
    : [{ stage: node, label: node.name, path: `stages.${node.name}.with` }];
  for (const { stage, label, path } of checks) {
    const problem = await stage.plugin?.preflight?.(stage.params);
    if (problem !== undefined) {
      return `Stage "${label}" (${stage.plugin!.name}) cannot run: ${problem.message}; ` +
        `or point "${problem.param}" elsewhere with --set ${path}.${problem.param}=...`;
    }
  }
  return undefined;
}

/** Which stages are selected by --only/--from/--until, and which are forced. */
export function select(
  graph: Graph,
  options: RunOptions,
): { selected: Set<string>; forced: Set<string> } {
  const names = graph.stages.map((s) => s.name);
  const byName = new Map(graph.stages.map((s) => [s.name, s]));
  for (const flag of ["only", "from", "until"] as const) {
    const value = options[flag];
    if (value !== undefined && !byName.has(value)) {
      throw new Error(
        `Unknown stage "${value}" for --${flag}: stages are ${
          names.map((n) => `"${n}"`).join(", ")
        }`,
      );
    }
  }
  const descendants = (start: string): Set<string> => {
    const out = new Set([start]);
    for (const stage of graph.stages) {
      if (stage.deps.some((d) => out.has(d))) out.add(stage.name);
    }
    return out;
  };
  const ancestors = (start: string): Set<string> => {
    const out = new Set<string>();
    const visit = (name: string) => {
      if (out.has(name)) return;
      out.add(name);
      for (const dep of byName.get(name)!.deps) visit(dep);
    };
    visit(start);
    return out;
  };
  let selected = new Set(names);
  const forced = new Set<string>(options.force ? names : []);
  if (options.only) {
    selected = new Set([options.only]);
    forced.add(options.only);
  }
  if (options.from) {
    selected = new Set([...selected].filter((n) => descendants(options.from!).has(n)));
    forced.add(options.from);
  }
  if (options.until) {
    selected = new Set([...selected].filter((n) => ancestors(options.until!).has(n)));
  }
  return { selected, forced };
}
