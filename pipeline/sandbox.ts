/**
 * Least privilege for plugins. `deno task pipeline run` does not run a
 * graph's plugins with the task's own (broad) permissions: it validates the
 * graph in a child process that may only read, works out what the graph's
 * plugins need ({@linkcode sandboxPlan}), and runs the graph in a second
 * child process with exactly that ({@linkcode sandboxFlags}):
 *
 * - read: the project, the graph file, the plugin files it names, the runs
 *   folder, the paths in its params (`p.string({ path })`), and what its
 *   built-in plugins declare (`permissions.read`, e.g. system SoundFonts);
 * - write: the runs folder and the paths in `path: "write"` params (never a
 *   system folder: validation refuses them);
 * - run, env, ffi: only what its built-in plugins declare (FluidSynth for
 *   audio, OpenBLAS for the wasm-openblas backend); no network.
 *
 * A plugin loaded by path gets no more than the built-ins of its graph need:
 * its own `permissions` are not honoured, and its path params only when the
 * graph sets them. The commands that only look (`plan`, `graph`, `plugins`,
 * `schema`, `--dry-run`) drop write, run, FFI, network and system access
 * before any plugin is loaded.
 *
 * @module
 */

import { dirname, isAbsolute, join, resolve } from "node:path";
import type { Graph, ResolvedComponent, StageNode } from "./graph.ts";
import type { Plugin, PluginPermissions } from "./plugin.ts";
import type { ParamsSchema } from "./schema.ts";

/** True when an executable of that name is in one of the PATH folders. */
export function onPath(name: string): boolean {
  let path = "";
  try {
    path = Deno.env.get("PATH") ?? "";
  } catch {
    return true; // no right to read PATH here: keep the program, as declared
  }
  const folders = path.split(Deno.build.os === "windows" ? ";" : ":");
  return folders.some((folder) => {
    try {
      return folder !== "" && Deno.statSync(join(folder, name)).isFile;
    } catch {
      return false;
    }
  });
}

/** What a run of a graph may touch. */
export interface SandboxPlan {
  read: string[];
  write: string[];
  run: string[];
  env: string[];
  ffi: boolean;
}

/** Environment variables the runner's own libraries read (npm `yaml`). */
const RUNNER_ENV = ["LOG_TOKENS", "LOG_STREAM"];

const isResolvedComponent = (value: unknown): value is ResolvedComponent =>
  typeof value === "object" && value !== null && "plugin" in value && "use" in value &&
  "params" in value;

/** A plugin together with its resolved params, where it came from, and its file if loaded by path. */
interface Use {
  plugin: Plugin;
  params: Record<string, unknown>;
  file?: string;
}

/** Every plugin a graph uses (stages, loop bodies, components, backend), with its params. */
function usesOf(graph: Graph): Use[] {
  const base = dirname(resolve(graph.file));
  const out: Use[] = [];
  const component = (c: ResolvedComponent) => {
    out.push({
      plugin: c.plugin,
      params: c.params,
      file: c.sourceHash ? resolve(base, c.use) : undefined,
    });
    nested(c.params);
  };
  const nested = (params: Record<string, unknown>) => {
    for (const value of Object.values(params)) {
      if (isResolvedComponent(value)) component(value);
      else if (Array.isArray(value)) {
        for (const v of value) if (isResolvedComponent(v)) component(v);
      }
    }
  };
  const stage = (node: StageNode) => {
    if (node.plugin) {
      out.push({
        plugin: node.plugin,
        params: node.params,
        file: node.sourceHash ? resolve(base, node.use!) : undefined,
      });
      nested(node.params);
    }
    for (const body of node.loop?.body ?? []) stage(body);
  };
  if (graph.backend) component(graph.backend);
  for (const node of graph.stages) stage(node);
  return out;
}

/**
 * Works out what a graph's plugins need (see the module doc).
 *
 * @param graph The validated graph.
 * @param options `runsDir` (where runs and the cache go) and `projectRoot` (this checkout).
 * @returns Absolute paths to read and write, programs, variables, and FFI.
 */
export function sandboxPlan(
  graph: Graph,
  options: { runsDir: string; projectRoot: string },
): SandboxPlan {
  const read = new Set([resolve(options.projectRoot), resolve(graph.file)]);
  const write = new Set([resolve(options.runsDir)]);
  const run = new Set<string>();
  const env = new Set(RUNNER_ENV);
  let ffi = false;
  for (const { plugin, params, file } of usesOf(graph)) {
    if (file) read.add(file);
    for (const [key, spec] of Object.entries(plugin.params as ParamsSchema)) {
      const value = params[key];
      if (spec.type !== "string" || !spec.path || typeof value !== "string" || value === "") {
        continue;
      }
      // A plugin loaded by path gets a path only when the graph gives it, not from its defaults.
      if (file && value === spec.default) continue;
      const path = resolve(value);
      (spec.path === "write" ? write : read).add(path);
    }
    if (file || !plugin.permissions) continue;
    const wants: PluginPermissions = typeof plugin.permissions === "function"
      ? plugin.permissions(params as never)
      : plugin.permissions;
    for (const name of wants.run ?? []) run.add(name);
    for (const name of wants.env ?? []) env.add(name);
    for (const path of wants.read ?? []) read.add(isAbsolute(path) ? path : resolve(path));
    for (const path of wants.write ?? []) write.add(isAbsolute(path) ? path : resolve(path));
    ffi ||= wants.ffi === true;
  }
  for (const path of write) read.add(path);
  const sorted = (set: Set<string>) => [...set].sort();
  // A program that is not installed is left out: Deno would print a notice for it at every start.
  const installed = [...run].filter((name) => isAbsolute(name) || onPath(name));
  return {
    read: sorted(read),
    write: sorted(write),
    run: sorted(new Set(installed)),
    env: sorted(env),
    ffi,
  };
}

/**
 * Deno permission flags for a plan.
 *
 * @param plan From {@linkcode sandboxPlan}.
 * @returns Flags for `deno run`, starting with `--no-prompt`.
 * @throws {Error} When a path or name holds a comma, which Deno's flag lists cannot carry.
 */
export function sandboxFlags(plan: SandboxPlan): string[] {
  const list = (flag: string, items: string[]) => {
    const bad = items.find((item) => item.includes(","));
    if (bad !== undefined) {
      throw new Error(
        `Cannot run in the sandbox: "${bad}" holds a comma, which a permission list cannot carry; rename it or run with --no-sandbox`,
      );
    }
    return items.length > 0 ? [`${flag}=${items.join(",")}`] : [];
  };
  return [
    "--no-prompt",
    ...list("--allow-read", plan.read),
    ...list("--allow-write", plan.write),
    ...list("--allow-run", plan.run),
    ...list("--allow-env", plan.env),
    ...(plan.ffi ? ["--allow-ffi"] : []),
  ];
}

/**
 * Drops every permission that changes the machine, before a command that only
 * looks (`plan`, `graph`, `plugins`, `schema`, `--dry-run`) loads any plugin:
 * write, run, FFI, network and system information. Reading stays (the graph,
 * its plugins, the cache and the data folders its plan fingerprints), and so
 * does the environment.
 */
export async function dropToReadOnly(): Promise<void> {
  for (const name of ["write", "run", "ffi", "net", "sys"] as const) {
    await Deno.permissions.revoke({ name });
  }
}
