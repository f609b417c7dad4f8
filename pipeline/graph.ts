/**
 * Loads a graph file and validates all of it before anything runs: plugins
 * (with "did you mean"), params against each plugin's schema, unknown keys,
 * input references, port types, cycles and loop blocks. All problems are
 * collected and reported together, each with file, line and column.
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import { type ArtifactCodec, type ComponentPlugin, jsonCodec, type StagePlugin } from "./plugin.ts";
import type { Registry } from "./registry.ts";
import { type ConfigIssue, parseLocatedYaml } from "./yaml.ts";
import { Validator } from "./validate.ts";

export type { Registry };

/** A component resolved from YAML: its plugin, params, and weight in a list. */
export interface ResolvedComponent {
  plugin: ComponentPlugin;
  /** What `use` said: a built-in name or a path. */
  use: string;
  /** The absolute path, for plugins loaded by path. */
  path?: string;
  params: Record<string, unknown>;
  weight: number;
  /** Hash of the module source for plugins loaded by path (their code is part of the cache key). */
  sourceHash?: string;
}

/** A reference to another stage's output, written `stage.output`. */
export interface Ref {
  stage: string;
  output: string;
}

/** The carried value of a loop: its first value and where each next value comes from. */
export interface Carry {
  init: Ref;
  next: Ref;
  type: string;
}

/** A validated stage: a plugin stage or a loop with a body of stages. */
export interface StageNode {
  name: string;
  /** Position in the file, for deterministic ordering. */
  index: number;
  /** A plugin stage has `plugin`; a loop has `loop`. */
  plugin?: StagePlugin;
  use?: string;
  sourceHash?: string;
  params: Record<string, unknown>;
  inputs: Record<string, Ref>;
  loop?: {
    episodes: number;
    checkpointEvery: number;
    carry: Record<string, Carry>;
    /** Body stages in execution order. */
    body: StageNode[];
  };
  /** Names of the stages (at the same level) whose outputs this one needs. */
  deps: string[];
}

/** A validated graph, stages in execution order. */
export interface Graph {
  file: string;
  name: string;
  description: string;
  seed: number;
  /** The tensor backend (or other runtime) to start first; none when the registry has no default. */
  backend?: ResolvedComponent;
  stages: StageNode[];
  /** Where the graph's plugins came from: stages rebuild recorded components through it. */
  registry: Registry;
  /** The config as written plus overrides (for the manifest). */
  config: unknown;
}

/** Thrown when a graph is invalid; carries every issue found. */
export class GraphError extends Error {
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    super(`Invalid graph: ${issues.length} problem(s)`);
    this.name = "GraphError";
    this.issues = [...issues].sort((a, b) =>
      a.file === b.file ? a.line - b.line || a.col - b.col : a.file < b.file ? -1 : 1
    );
  }
}

/** Levenshtein distance, for "did you mean". */
function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length];
}

/** True for a YAML mapping (a plain object, not an array or null). */
export const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** `"a", "b"` for a message, or `none`. */
export const quoteList = (items: readonly string[]): string =>
  items.length === 0 ? "none" : items.map((s) => `"${s}"`).join(", ");

/** Returns ` Did you mean "x"?` for the closest candidate, or "". */
export function didYouMean(word: string, candidates: readonly string[]): string {
  let best = "";
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  const limit = Math.max(2, Math.floor(word.length / 3));
  if (best !== "" && bestDistance <= limit) return ` Did you mean "${best}"?`;
  // A shortened name ("hidden" for "hiddenDim") is far in edits but plainly meant.
  const lower = word.toLowerCase();
  const prefixed = word.length >= 3
    ? candidates.filter((c) => c.toLowerCase().startsWith(lower))
    : [];
  return prefixed.length === 1 ? ` Did you mean "${prefixed[0]}"?` : "";
}

/** Options for {@linkcode loadGraph}. */
export interface LoadGraphOptions {
  registry: Registry;
  /** `path=value` overrides applied before validation (`stages.pretrain.with.epochs=1`). */
  overrides?: string[];
}

/**
 * Reads, parses and validates a graph file.
 *
 * @param file Path of the YAML file.
 * @param options The plugin registry and `--set` overrides.
 * @returns The validated graph.
 * @throws {GraphError} With every problem found, when the graph is invalid.
 */
export async function loadGraph(file: string, options: LoadGraphOptions): Promise<Graph> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (error) {
    throw new GraphError([{
      file,
      line: 0,
      col: 0,
      path: [],
      message: `Cannot read the graph file: ${(error as Error).message}`,
    }]);
  }
  return await parseGraph(text, file, options);
}

/** Like {@linkcode loadGraph} for YAML text; `file` names it in messages and anchors paths. */
export async function parseGraph(
  text: string,
  file: string,
  options: LoadGraphOptions,
): Promise<Graph> {
  const doc = parseLocatedYaml(text, file);
  if (doc.issues.length > 0) throw new GraphError(doc.issues);
  const validator = new Validator(doc, options.registry, dirname(resolve(file)));
  for (const override of options.overrides ?? []) validator.applyOverride(override);
  const graph = await validator.validate();
  if (validator.issues.length > 0 || !graph) throw new GraphError(validator.issues);
  return graph;
}

/** A stage's outputs as seen by other stages: port name to type and codec. */
export interface OutputInfo {
  type: string;
  codec: ArtifactCodec;
}

/** A stage plugin's output ports with their types and codecs (JSON when none is given). */
export function pluginOutputs(plugin: StagePlugin): Map<string, OutputInfo> {
  return new Map(
    Object.entries(plugin.outputs).map(([port, spec]) => [
      port,
      { type: spec.type, codec: (spec.codec ?? jsonCodec) as ArtifactCodec },
    ]),
  );
}

/** Output ports of a validated stage (for a loop: its carried values) with type and codec. */
export function stageOutputs(node: StageNode): Map<string, OutputInfo> {
  if (node.plugin) return pluginOutputs(node.plugin);
  const out = new Map<string, OutputInfo>();
  for (const [name, carry] of Object.entries(node.loop!.carry)) {
    const producer = node.loop!.body.find((s) => s.name === carry.next.stage)!;
    const spec = producer.plugin!.outputs[carry.next.output];
    out.set(name, { type: carry.type, codec: (spec.codec ?? jsonCodec) as ArtifactCodec });
  }
  return out;
}

/** A stage of a {@linkcode GraphOutline}. */
export interface OutlineStage {
  /** The plugin, as `use` named it (a loop has none). */
  use?: string;
  /** Input port to the output it reads. */
  in: Record<string, Ref>;
  loop?: {
    episodes: number;
    carry: Record<string, { init: Ref; next: Ref }>;
    stages: Record<string, OutlineStage>;
  };
}

/** The validated graph's shape as JSON (for the manifest and its diagram): stages in file order. */
export interface GraphOutline {
  stages: Record<string, OutlineStage>;
}

/**
 * The shape of a validated graph, after overrides and with every reference
 * resolved: what a diagram of the run draws, without reading the YAML again.
 *
 * @param graph A validated graph.
 * @returns Its stages in file order, each with its plugin, inputs and loop.
 */
export function graphOutline(graph: Graph): GraphOutline {
  const level = (nodes: StageNode[]): Record<string, OutlineStage> =>
    Object.fromEntries(
      [...nodes].sort((a, b) => a.index - b.index).map((node) => [node.name, {
        ...(node.use !== undefined ? { use: node.use } : {}),
        in: node.inputs,
        ...(node.loop
          ? {
            loop: {
              episodes: node.loop.episodes,
              carry: Object.fromEntries(
                Object.entries(node.loop.carry).map(([name, c]) => [
                  name,
                  { init: c.init, next: c.next },
                ]),
              ),
              stages: level(node.loop.body),
            },
          }
          : {}),
      }]),
    );
  return { stages: level(graph.stages) };
}

/** The graph as a Mermaid flowchart: stages as nodes, references as labelled edges. */
export function toMermaid(graph: Graph): string {
  const lines = ["flowchart TD"];
  const id = (name: string) => name.replace(/[^A-Za-z0-9_]/g, "_");
  const edges = (stages: StageNode[], indent: string, loop?: StageNode) => {
    for (const stage of stages) {
      for (const [port, ref] of Object.entries(stage.inputs)) {
        const from = loop && ref.stage === loop.name ? `${id(loop.name)}_in` : id(ref.stage);
        lines.push(`${indent}${from} -->|${ref.output} → ${port}| ${id(stage.name)}`);
      }
    }
  };
  for (const stage of graph.stages) {
    if (stage.loop) {
      lines.push(`  subgraph ${id(stage.name)}["${stage.name}: loop × ${stage.loop.episodes}"]`);
      lines.push(
        `    ${id(stage.name)}_in(["carry: ${Object.keys(stage.loop.carry).join(", ")}"])`,
      );
      for (const body of stage.loop.body) {
        lines.push(`    ${id(body.name)}["${body.name}<br/><small>${body.use}</small>"]`);
      }
      edges(stage.loop.body, "    ", stage);
      for (const [name, carry] of Object.entries(stage.loop.carry)) {
        lines.push(`    ${id(carry.next.stage)} -.->|${name}| ${id(stage.name)}_in`);
      }
      lines.push("  end");
      for (const carry of Object.values(stage.loop.carry)) {
        lines.push(`  ${id(carry.init.stage)} -->|${carry.init.output}| ${id(stage.name)}_in`);
      }
    } else {
      lines.push(`  ${id(stage.name)}["${stage.name}<br/><small>${stage.use}</small>"]`);
    }
  }
  edges(graph.stages.filter((s) => !s.loop), "  ");
  return lines.join("\n");
}
