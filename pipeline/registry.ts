/**
 * The one way to find a plugin: a {@linkcode Registry} of built-in names, or
 * the path of a user's `.ts` module. The graph loader uses it for the stages
 * and components a graph names, and {@linkcode Components} uses it at run time
 * for the components a stage builds from a recorded spec (a checkpoint's model,
 * a token corpus's tokenizer), so that built-in and user plugins are rebuilt
 * the same way.
 *
 * @module
 */

import { isAbsolute, resolve } from "node:path";
import { fileURLToPath as fromFileUrl, pathToFileURL } from "node:url";
import { type ComponentPlugin, isStagePlugin, type Plugin } from "./plugin.ts";
import {
  checkValue,
  type ComponentRef,
  describeValue,
  type FullComponentRef,
  type ParamsSchema,
  type WeightedComponent,
} from "./schema.ts";

/** Where built-in plugins come from: names and lazy loaders, nothing loaded up front. */
export interface Registry {
  /** Every built-in plugin name, sorted. */
  names(): string[];
  /** Loads one plugin by name; `undefined` when there is none. */
  load(name: string): Promise<Plugin | undefined>;
  /**
   * The URL of a built-in plugin's module, for code that must import it itself
   * (a worker); `undefined` when there is none.
   */
  url?(name: string): string | undefined;
  /**
   * The backend component of a graph that names none (`shorthand` undefined),
   * or that names one by a bare word (`backend: wasm`). Without it, a graph
   * without `backend` runs without one.
   */
  backend?(shorthand?: string): ComponentRef;
  /**
   * Environment variables the built-in plugins read while a graph is only
   * planned (their `permissions` and `preflight`), granted to the read-only
   * planning child of the sandbox.
   */
  planEnv?: readonly string[];
}

/** What {@linkcode loadPlugin} found. */
export interface LoadedPlugin {
  plugin?: Plugin;
  /** Hash of the module source, for plugins loaded by path. */
  hash?: string;
  /** The absolute path, for plugins loaded by path. */
  path?: string;
  /** The module's URL (built-ins when the registry knows it, and paths). */
  url?: string;
  error?: string;
}

/** True when `use` names a module by path rather than a built-in by name. */
export function isPluginPath(use: string): boolean {
  return use.startsWith("./") || use.startsWith("../") || use.startsWith("/") ||
    use.endsWith(".ts") || use.endsWith(".js") || /^[a-z]:[\\/]/i.test(use);
}

/**
 * Loads a plugin by built-in name or by path.
 *
 * @param use A built-in name (`"model/lstm"`) or a path (`"./gru.ts"`).
 * @param options The registry, and the folder relative paths start from.
 * @returns The plugin, or an `error` that says why there is none.
 */
export async function loadPlugin(
  use: string,
  options: { registry: Registry; baseDir: string },
): Promise<LoadedPlugin> {
  if (/^[a-z][a-z0-9+.-]*:/i.test(use) && !/^[a-z]:[\\/]/i.test(use)) {
    return {
      error: `Cannot load plugin "${use}": plugins are loaded from files only, never from URLs` +
        ` or other schemes; download it, read it, and give its path (e.g. "./my_plugin.ts")`,
    };
  }
  if (!isPluginPath(use)) {
    const plugin = await options.registry.load(use);
    if (plugin) return { plugin, url: options.registry.url?.(use) };
    return { error: `Unknown plugin "${use}"` };
  }
  const path = isAbsolute(use) ? use : resolve(options.baseDir, use);
  let source: Uint8Array;
  try {
    source = await Deno.readFile(path);
  } catch {
    return { error: `Cannot load plugin "${use}": no file at "${path}"` };
  }
  const url = pathToFileURL(path).href;
  let module: Record<string, unknown>;
  try {
    module = await import(url);
  } catch (error) {
    return { error: `Cannot load plugin "${use}": ${(error as Error).message.split("\n")[0]}` };
  }
  const plugin = (module.default ?? module.plugin) as Plugin | undefined;
  if (!plugin || typeof plugin !== "object" || typeof plugin.name !== "string") {
    return {
      error:
        `Cannot load plugin "${use}": the module has no default export made with definePlugin()`,
    };
  }
  const digest = await crypto.subtle.digest("SHA-256", source as Uint8Array<ArrayBuffer>);
  const hash = Array.from(
    new Uint8Array(digest).slice(0, 8),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
  return { plugin, hash, path, url };
}

/** A component resolved from a spec: its plugin, full spec and created params. */
export interface ResolvedSpec {
  plugin: ComponentPlugin;
  /** The spec with every param filled in and `use` made absolute for paths. */
  spec: FullComponentRef;
  /** The params `create()` receives: defaults filled in, nested components created. */
  params: Record<string, unknown>;
  /** The module's URL, when known (for workers that rebuild the component). */
  url?: string;
}

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Builds components from `{use, with}` specs at run time, through the same
 * registry and path rule as the graph loader, checking the params against the
 * plugin's schema and filling in defaults. Stages reach it as
 * `ctx.component(spec, kind)`.
 */
export class Components {
  #registry: Registry;
  #baseDir: string;

  /**
   * @param registry The built-in plugins.
   * @param baseDir The folder relative paths start from (default: the working directory).
   */
  constructor(registry: Registry, baseDir: string = Deno.cwd()) {
    this.#registry = registry;
    this.#baseDir = baseDir;
  }

  /**
   * Resolves a spec: loads the plugin, checks and fills its params, creates
   * nested components.
   *
   * @param ref A plugin name, or `{use, with}`.
   * @param kind The component kind expected, e.g. `"tokenizer"`.
   * @returns The plugin, the full spec and the params for `create()`.
   * @throws {Error} `Cannot create <kind> "<use>": <reason>`.
   */
  async resolve(ref: unknown, kind: string): Promise<ResolvedSpec> {
    const spec = typeof ref === "string" ? { use: ref } : ref as ComponentRef;
    if (!isMap(spec) || typeof spec.use !== "string" || spec.use === "") {
      throw new Error(
        `Cannot create ${kind}: expected a plugin name or {use, with}, received ${
          describeValue(ref)
        }`,
      );
    }
    const where = `Cannot create ${kind} ${JSON.stringify(spec.use)}`;
    // Specs recorded before paths were made absolute may hold a file URL.
    const use = spec.use.startsWith("file:") ? fromFileUrl(spec.use) : spec.use;
    const loaded = await loadPlugin(use, { registry: this.#registry, baseDir: this.#baseDir });
    if (!loaded.plugin) throw new Error(`${where}: ${loaded.error}`);
    const plugin = loaded.plugin;
    if (isStagePlugin(plugin) || plugin.kind !== kind) {
      const what = isStagePlugin(plugin) ? `a ${plugin.kind} stage` : `a ${plugin.kind} component`;
      throw new Error(`${where}: it is ${what}, not a ${kind} component`);
    }
    const given = spec.with ?? {};
    if (!isMap(given)) {
      throw new Error(`${where}: expected a map of params, received ${describeValue(given)}`);
    }
    const schema = plugin.params as ParamsSchema;
    for (const key of Object.keys(given)) {
      if (!(key in schema)) throw new Error(`${where}: unknown param "${key}"`);
    }
    const full: Record<string, unknown> = {};
    const params: Record<string, unknown> = {};
    for (const [key, field] of Object.entries(schema)) {
      const raw = key in given ? given[key] : structuredClone(field.default);
      if (raw === undefined) throw new Error(`${where}: missing required param "${key}"`);
      if (field.type === "component") {
        const nested = await this.resolve(raw, field.kind);
        full[key] = nested.spec;
        params[key] = nested.plugin.create(nested.params, nested.spec);
      } else if (field.type === "components") {
        if (!Array.isArray(raw)) {
          throw new Error(`${where}: ${key}: expected a list, received ${describeValue(raw)}`);
        }
        const specs: unknown[] = [];
        const list: WeightedComponent[] = [];
        for (const item of raw) {
          const nested = await this.resolve(item, field.kind);
          const weight = isMap(item) && typeof item.weight === "number" ? item.weight : 1;
          specs.push({ ...nested.spec, weight });
          list.push({
            name: nested.plugin.name,
            weight,
            component: nested.plugin.create(nested.params, nested.spec),
          });
        }
        full[key] = specs;
        params[key] = list;
      } else {
        const problems = checkValue(field, raw, [key]);
        if (problems.length > 0) {
          throw new Error(`${where}: ${problems[0].path.join(".")}: ${problems[0].message}`);
        }
        full[key] = raw;
        params[key] = raw;
      }
    }
    return {
      plugin: plugin as ComponentPlugin,
      spec: { use: loaded.path ?? spec.use, with: full },
      params,
      url: loaded.url,
    };
  }

  /**
   * Creates a component from a spec.
   *
   * @param ref A plugin name, or `{use, with}`.
   * @param kind The component kind expected, e.g. `"model"`.
   * @returns What the plugin's `create()` returned.
   * @throws {Error} `Cannot create <kind> "<use>": <reason>`.
   */
  async create<T = unknown>(ref: unknown, kind: string): Promise<T> {
    const resolved = await this.resolve(ref, kind);
    return resolved.plugin.create(resolved.params, resolved.spec) as T;
  }
}
