/**
 * The graph validator: checks a parsed graph document against the registry's
 * plugins (names with "did you mean", params against each plugin's schema,
 * unknown keys, input references, port types, cycles and loop blocks) and
 * collects every problem with its file, line and column. `parseGraph()` in
 * `graph.ts` drives it.
 *
 * @module
 */

import { type ComponentPlugin, isStagePlugin, jsonCodec, type Plugin } from "./plugin.ts";
import { isPluginPath, loadPlugin, type Registry } from "./registry.ts";
import { checkValue, type ComponentKind, describeValue, type ParamSpec } from "./schema.ts";
import { type ConfigIssue, type KeyPath, type LocatedDocument, positionOf } from "./yaml.ts";
import {
  type Carry,
  didYouMean,
  type Graph,
  isMap,
  type OutputInfo,
  pluginOutputs,
  quoteList,
  type Ref,
  type ResolvedComponent,
  type StageNode,
} from "./graph.ts";
import { orderStages } from "./order.ts";
import { applyOverride } from "./overrides.ts";

const TOP_KEYS = ["name", "description", "seed", "backend", "stages"];
const STAGE_KEYS = ["use", "with", "in", "description"];
const LOOP_STAGE_KEYS = ["loop", "description"];
const LOOP_KEYS = ["episodes", "checkpointEvery", "carry", "stages"];
const COMPONENT_KEYS = ["use", "with", "weight"];
/** Outputs of a stage whose plugin failed to load: references to it are not checked. */
const BROKEN = new Map<string, never>();
const STAGE_NAME_RE = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** Validates one graph document; `issues` holds every problem found. */
export class Validator {
  readonly issues: ConfigIssue[] = [];
  #doc: LocatedDocument;
  #registry: Registry;
  #baseDir: string;
  #pluginCache = new Map<
    string,
    Promise<{ plugin?: Plugin; hash?: string; path?: string; error?: string }>
  >();
  /** Names of the plugins loaded by path, with where they came from. */
  #userNames = new Map<string, { use: string; path: string }>();

  constructor(doc: LocatedDocument, registry: Registry, baseDir: string) {
    this.#doc = doc;
    this.#registry = registry;
    this.#baseDir = baseDir;
  }

  report(path: KeyPath, message: string): void {
    this.issues.push({ ...positionOf(this.#doc, path), path, message });
  }

  applyOverride(override: string): void {
    const issue = applyOverride(this.#doc, override);
    if (issue) this.issues.push(issue);
  }

  async validate(): Promise<Graph | undefined> {
    const root = this.#doc.value;
    if (!isMap(root)) {
      this.report(
        [],
        `Expected a map with ${quoteList(TOP_KEYS)}, received ${describeValue(root)}`,
      );
      return undefined;
    }
    this.#unknownKeys(root, [], TOP_KEYS);
    const name = root.name ?? this.#doc.file.replace(/^.*\//, "").replace(/\.ya?ml$/, "");
    if (typeof name !== "string" || !STAGE_NAME_RE.test(name)) {
      this.report(
        ["name"],
        `Expected a name of letters, digits, "_" or "-", received ${describeValue(name)}`,
      );
    }
    const seed = root.seed ?? 0;
    if (typeof seed !== "number" || !Number.isInteger(seed) || seed < 0) {
      this.report(["seed"], `Expected an integer >= 0, received ${describeValue(seed)}`);
    }
    // `backend: wasm` is shorthand the registry expands (the built-ins: tfjs with that name).
    const shorthand = typeof root.backend === "string" && !root.backend.includes("/") &&
      !isPluginPath(root.backend);
    const backendValue = shorthand || root.backend === undefined
      ? this.#registry.backend?.(root.backend as string | undefined)
      : root.backend;
    const backend = backendValue === undefined
      ? undefined
      : await this.#component(backendValue, ["backend"], "backend", false);
    if (!isMap(root.stages) || Object.keys(root.stages).length === 0) {
      this.report(["stages"], `Expected a map of stages, received ${describeValue(root.stages)}`);
      return undefined;
    }
    const stages = await this.#stageMap(root.stages, ["stages"], new Map(), undefined);
    if ((backendValue !== undefined && !backend) || this.issues.length > 0) return undefined;
    return {
      file: this.#doc.file,
      name: name as string,
      description: typeof root.description === "string" ? root.description : "",
      seed: seed as number,
      backend,
      stages,
      registry: this.#registry,
      config: root,
    };
  }

  #unknownKeys(map: Record<string, unknown>, path: KeyPath, allowed: readonly string[]): void {
    for (const key of Object.keys(map)) {
      if (!allowed.includes(key)) {
        this.report(
          [...path, key],
          `Unknown key "${key}".${didYouMean(key, allowed)} Allowed keys: ${quoteList(allowed)}`,
        );
      }
    }
  }

  /** Loads a plugin by built-in name or by path relative to the graph file. */
  #loadPlugin(
    use: string,
  ): Promise<{ plugin?: Plugin; hash?: string; path?: string; error?: string }> {
    let pending = this.#pluginCache.get(use);
    if (!pending) {
      pending = this.#loadPluginUncached(use);
      this.#pluginCache.set(use, pending);
    }
    return pending;
  }

  async #loadPluginUncached(
    use: string,
  ): Promise<{ plugin?: Plugin; hash?: string; path?: string; error?: string }> {
    const loaded = await loadPlugin(use, { registry: this.#registry, baseDir: this.#baseDir });
    if (!loaded.plugin) {
      if (isPluginPath(use) || loaded.error !== `Unknown plugin "${use}"`) return loaded;
      return {
        error: `Unknown plugin "${use}".${didYouMean(use, this.#registry.names())}` +
          ` Run "deno task pipeline plugins" to list them, or give a path such as "./my_plugin.ts"`,
      };
    }
    if (!loaded.path) return loaded;
    const { plugin, path } = loaded;
    // A user plugin may not take a built-in's name, nor another user plugin's: logs,
    // metrics (reward/<name>) and cache explanations would mix them up.
    if (this.#registry.names().includes(plugin.name)) {
      return {
        error: `Cannot load plugin "${use}": it is named "${plugin.name}", the name of a built-in` +
          ` plugin; give it a name of its own, e.g. "user/${plugin.name.split("/").pop()}"`,
      };
    }
    const other = this.#userNames.get(plugin.name);
    if (other !== undefined && other.path !== path) {
      return {
        error: `Cannot load plugin "${use}": it is named "${plugin.name}", like "${other.use}";` +
          ` give each plugin a name of its own`,
      };
    }
    this.#userNames.set(plugin.name, { use, path });
    return loaded;
  }

  /** Resolves one component written as `NAME` or `{use, with, weight}`. */
  async #component(
    value: unknown,
    path: KeyPath,
    kind: ComponentKind,
    weighted: boolean,
  ): Promise<ResolvedComponent | undefined> {
    let use: unknown = value;
    let withValue: unknown = {};
    let weight: unknown = 1;
    if (isMap(value)) {
      this.#unknownKeys(value, path, weighted ? COMPONENT_KEYS : ["use", "with"]);
      use = value.use;
      withValue = value.with ?? {};
      weight = value.weight ?? 1;
    }
    if (typeof use !== "string" || use === "") {
      this.report(
        path,
        `Expected a ${kind} plugin name or {use, with}, received ${describeValue(use)}`,
      );
      return undefined;
    }
    const usePath = isMap(value) ? [...path, "use"] : path;
    if (typeof weight !== "number" || !Number.isFinite(weight) || weight < 0) {
      this.report([...path, "weight"], `Expected a number >= 0, received ${describeValue(weight)}`);
    }
    const loaded = await this.#loadPlugin(use);
    if (!loaded.plugin) {
      this.report(usePath, loaded.error!);
      return undefined;
    }
    const plugin = loaded.plugin;
    if (isStagePlugin(plugin) || plugin.kind !== kind) {
      const what = isStagePlugin(plugin) ? `a ${plugin.kind} stage` : `a ${plugin.kind} component`;
      this.report(usePath, `Expected a ${kind} component plugin, but "${use}" is ${what}`);
      return undefined;
    }
    const params = await this.#params(plugin, withValue, isMap(value) ? [...path, "with"] : path);
    if (!params) return undefined;
    return {
      plugin: plugin as ComponentPlugin,
      use,
      params,
      weight: weight as number,
      sourceHash: loaded.hash,
      path: loaded.path,
    };
  }

  /** Checks a `with` map against a plugin's schema and fills in defaults. */
  async #params(
    plugin: Plugin,
    value: unknown,
    path: KeyPath,
  ): Promise<Record<string, unknown> | undefined> {
    if (!isMap(value)) {
      this.report(path, `Expected a map of params, received ${describeValue(value)}`);
      return undefined;
    }
    const schema = plugin.params as Record<string, ParamSpec>;
    const allowed = Object.keys(schema);
    for (const key of Object.keys(value)) {
      if (!(key in schema)) {
        this.report(
          [...path, key],
          `Unknown param "${key}" for "${plugin.name}".${didYouMean(key, allowed)}` +
            ` Allowed params: ${quoteList(allowed)}`,
        );
      }
    }
    const out: Record<string, unknown> = {};
    let ok = true;
    for (const [key, spec] of Object.entries(schema)) {
      const given = key in value;
      const fieldPath = [...path, key];
      const raw = given ? value[key] : structuredClone(spec.default);
      if (raw === undefined) {
        this.report(
          path,
          `Missing required param "${key}" for "${plugin.name}" (${spec.description})`,
        );
        ok = false;
        continue;
      }
      if (spec.type === "component") {
        const component = await this.#component(raw, fieldPath, spec.kind, false);
        if (!component) ok = false;
        out[key] = component;
      } else if (spec.type === "components") {
        if (!Array.isArray(raw) || (spec.minItems !== undefined && raw.length < spec.minItems)) {
          this.report(
            fieldPath,
            `Expected a list of at least ${spec.minItems ?? 0} ${spec.kind} plugin(s), received ${
              describeValue(raw)
            }`,
          );
          ok = false;
          continue;
        }
        const list: ResolvedComponent[] = [];
        for (let i = 0; i < raw.length; i++) {
          const component = await this.#component(raw[i], [...fieldPath, i], spec.kind, true);
          if (component) list.push(component);
          else ok = false;
        }
        out[key] = list;
      } else {
        const problems = checkValue(spec, raw, fieldPath);
        for (const problem of problems) this.report(problem.path, problem.message);
        if (problems.length > 0) ok = false;
        out[key] = raw;
      }
    }
    return ok ? out : undefined;
  }

  /**
   * Validates a map of stages (the top level or a loop body). `outer` holds the
   * outputs visible from enclosing levels; `loopName` is set inside a body.
   */
  async #stageMap(
    stagesValue: Record<string, unknown>,
    path: KeyPath,
    outer: Map<string, Map<string, OutputInfo>>,
    loopName: string | undefined,
  ): Promise<StageNode[]> {
    const names = Object.keys(stagesValue);
    const nodes: StageNode[] = [];
    const outputs = new Map<string, Map<string, OutputInfo>>();
    // First pass: plugins and declared outputs, so references can be checked in any order.
    const pending: { node: StageNode; raw: Record<string, unknown>; path: KeyPath }[] = [];
    for (const [index, name] of names.entries()) {
      const stagePath = [...path, name];
      const raw = stagesValue[name];
      if (!STAGE_NAME_RE.test(name)) {
        this.report(stagePath, `Invalid stage name "${name}": use letters, digits, "_" and "-"`);
        continue;
      }
      if (outer.has(name)) {
        this.report(stagePath, `Stage "${name}" is already defined outside this loop`);
        continue;
      }
      if (!isMap(raw)) {
        this.report(
          stagePath,
          `Expected a map with "use" (or "loop"), received ${describeValue(raw)}`,
        );
        continue;
      }
      const node: StageNode = { name, index, params: {}, inputs: {}, deps: [] };
      if ("loop" in raw) {
        if (loopName !== undefined) {
          this.report([...stagePath, "loop"], "Loops cannot be nested");
          continue;
        }
        this.#unknownKeys(raw, stagePath, LOOP_STAGE_KEYS);
        const carry = raw.loop && isMap(raw.loop) && isMap(raw.loop.carry) ? raw.loop.carry : {};
        // Types of carried values are known once the body is checked; reserve names now.
        outputs.set(
          name,
          new Map(Object.keys(carry).map((c) => [c, { type: "?", codec: jsonCodec }])),
        );
        pending.push({ node, raw, path: stagePath });
        continue;
      }
      this.#unknownKeys(raw, stagePath, STAGE_KEYS);
      if (typeof raw.use !== "string") {
        this.report(
          stagePath,
          `Missing "use": the plugin that runs this stage (or a "loop" block)`,
        );
        continue;
      }
      const loaded = await this.#loadPlugin(raw.use);
      if (!loaded.plugin) {
        this.report([...stagePath, "use"], loaded.error!);
        outputs.set(name, BROKEN);
        continue;
      }
      if (!isStagePlugin(loaded.plugin)) {
        this.report(
          [...stagePath, "use"],
          `"${raw.use}" is a ${loaded.plugin.kind} component, not a stage: put it in the "with"` +
            ` of a stage that takes a ${loaded.plugin.kind} component`,
        );
        continue;
      }
      node.plugin = loaded.plugin;
      node.use = raw.use;
      node.sourceHash = loaded.hash;
      outputs.set(name, pluginOutputs(loaded.plugin));
      pending.push({ node, raw, path: stagePath });
    }

    // A stage reported above (bad name, no "use", a component, an unknown plugin) is not
    // reported again by every reference to it.
    for (const name of names) if (!outputs.has(name) && !outer.has(name)) outputs.set(name, BROKEN);
    const visible = new Map([...outer, ...outputs]);
    // Loops first: their carried types are needed to check the stages that read them.
    pending.sort((a, b) => Number(!b.node.plugin) - Number(!a.node.plugin));
    for (const { node, raw, path: stagePath } of pending) {
      if (node.plugin) {
        const params = await this.#params(node.plugin, raw.with ?? {}, [...stagePath, "with"]);
        node.params = params ?? {};
        this.#inputs(node, raw.in ?? {}, [...stagePath, "in"], visible, outputs);
      } else {
        await this.#loop(node, raw.loop, [...stagePath, "loop"], visible, outputs);
      }
      nodes.push(node);
    }
    return this.#order(nodes, path);
  }

  #parseRef(
    value: unknown,
    path: KeyPath,
    visible: Map<string, Map<string, OutputInfo>>,
  ): { ref: Ref; info: OutputInfo } | undefined {
    if (typeof value !== "string" || !/^[^.]+\.[^.]+$/.test(value)) {
      this.report(path, `Expected a reference "stage.output", received ${describeValue(value)}`);
      return undefined;
    }
    const [stage, output] = value.split(".");
    const outputs = visible.get(stage);
    // A stage whose plugin did not load was reported already; its outputs are unknown.
    if (outputs === BROKEN) return undefined;
    if (!outputs) {
      this.report(
        path,
        `Unknown stage "${stage}" in "${value}".${didYouMean(stage, [...visible.keys()])}` +
          ` Stages: ${quoteList([...visible.keys()])}`,
      );
      return undefined;
    }
    const info = outputs.get(output);
    if (!info) {
      this.report(
        path,
        `Stage "${stage}" has no output "${output}".${didYouMean(output, [...outputs.keys()])}` +
          ` Its outputs: ${quoteList([...outputs.keys()])}`,
      );
      return undefined;
    }
    return { ref: { stage, output }, info };
  }

  #inputs(
    node: StageNode,
    value: unknown,
    path: KeyPath,
    visible: Map<string, Map<string, OutputInfo>>,
    sameLevel: Map<string, Map<string, OutputInfo>>,
  ): void {
    const plugin = node.plugin!;
    if (!isMap(value)) {
      this.report(path, `Expected a map of input: stage.output, received ${describeValue(value)}`);
      return;
    }
    const ports = Object.keys(plugin.inputs);
    for (const [port, refValue] of Object.entries(value)) {
      const spec = plugin.inputs[port];
      if (!spec) {
        this.report(
          [...path, port],
          `Unknown input "${port}" for "${plugin.name}".${didYouMean(port, ports)} Its inputs: ${
            quoteList(ports)
          }`,
        );
        continue;
      }
      const parsed = this.#parseRef(refValue, [...path, port], visible);
      if (!parsed) continue;
      if (parsed.info.type !== "?" && parsed.info.type !== spec.type) {
        this.report(
          [...path, port],
          `Type mismatch: input "${port}" of "${plugin.name}" expects "${spec.type}", but ` +
            `"${refValue}" is "${parsed.info.type}"`,
        );
        continue;
      }
      node.inputs[port] = parsed.ref;
      if (sameLevel.has(parsed.ref.stage) && !node.deps.includes(parsed.ref.stage)) {
        node.deps.push(parsed.ref.stage);
      }
    }
    for (const [port, spec] of Object.entries(plugin.inputs)) {
      if (!spec.optional && !(port in value)) {
        this.report(
          path,
          `Missing input "${port}" (${spec.type}) for "${plugin.name}": ${spec.description}`,
        );
      }
    }
  }

  async #loop(
    node: StageNode,
    value: unknown,
    path: KeyPath,
    visible: Map<string, Map<string, OutputInfo>>,
    sameLevel: Map<string, Map<string, OutputInfo>>,
  ): Promise<void> {
    if (!isMap(value)) {
      this.report(
        path,
        `Expected a map with ${quoteList(LOOP_KEYS)}, received ${describeValue(value)}`,
      );
      return;
    }
    this.#unknownKeys(value, path, LOOP_KEYS);
    const episodes = value.episodes;
    if (typeof episodes !== "number" || !Number.isInteger(episodes) || episodes < 1) {
      this.report(
        [...path, "episodes"],
        `Expected an integer >= 1, received ${describeValue(episodes)}`,
      );
    }
    const every = value.checkpointEvery ?? 10;
    if (typeof every !== "number" || !Number.isInteger(every) || every < 1) {
      this.report(
        [...path, "checkpointEvery"],
        `Expected an integer >= 1, received ${describeValue(every)}`,
      );
    }
    if (!isMap(value.carry) || Object.keys(value.carry).length === 0) {
      this.report(
        [...path, "carry"],
        `Expected a map of carried values {name: {init: stage.output, next: bodyStage.output}}, received ${
          describeValue(value.carry)
        }`,
      );
      return;
    }
    if (!isMap(value.stages) || Object.keys(value.stages).length === 0) {
      this.report(
        [...path, "stages"],
        `Expected a map of body stages, received ${describeValue(value.stages)}`,
      );
      return;
    }
    // Carry inits resolve against the outer level; the loop depends on them.
    const carryInfo = new Map<string, OutputInfo>();
    const inits = new Map<string, Ref>();
    for (const [carryName, carryValue] of Object.entries(value.carry)) {
      const carryPath = [...path, "carry", carryName];
      if (!isMap(carryValue)) {
        this.report(
          carryPath,
          `Expected {init: stage.output, next: bodyStage.output}, received ${
            describeValue(carryValue)
          }`,
        );
        continue;
      }
      this.#unknownKeys(carryValue, carryPath, ["init", "next"]);
      const outerVisible = new Map(visible);
      outerVisible.delete(node.name);
      const init = this.#parseRef(carryValue.init, [...carryPath, "init"], outerVisible);
      if (!init) continue;
      inits.set(carryName, init.ref);
      carryInfo.set(carryName, init.info);
      if (sameLevel.has(init.ref.stage) && !node.deps.includes(init.ref.stage)) {
        node.deps.push(init.ref.stage);
      }
    }
    sameLevel.set(node.name, carryInfo);
    visible.set(node.name, carryInfo);
    const bodyOuter = new Map(visible);
    bodyOuter.set(node.name, carryInfo);
    const body = await this.#stageMap(value.stages, [...path, "stages"], bodyOuter, node.name);
    const bodyNames = new Set(body.map((s) => s.name));
    // The loop depends on every outer stage its body reads.
    for (const stage of body) {
      for (const ref of Object.values(stage.inputs)) {
        if (!bodyNames.has(ref.stage) && ref.stage !== node.name && sameLevel.has(ref.stage)) {
          if (!node.deps.includes(ref.stage)) node.deps.push(ref.stage);
        }
      }
    }
    const bodyOutputs = new Map<string, Map<string, OutputInfo>>(
      body.filter((s) => s.plugin).map((s) => [s.name, pluginOutputs(s.plugin!)]),
    );
    // Body stages that were reported (an unknown plugin, ...) are not reported again here.
    for (const name of Object.keys(value.stages)) {
      if (!bodyOutputs.has(name)) bodyOutputs.set(name, BROKEN);
    }
    const carry: Record<string, Carry> = {};
    for (const [carryName, init] of inits) {
      const carryPath = [...path, "carry", carryName, "next"];
      const next = this.#parseRef(
        (value.carry[carryName] as Record<string, unknown>).next,
        carryPath,
        bodyOutputs,
      );
      if (!next) continue;
      const initInfo = carryInfo.get(carryName)!;
      if (next.info.type !== initInfo.type) {
        this.report(
          carryPath,
          `Type mismatch: carried "${carryName}" starts as "${initInfo.type}" but "${next.ref.stage}.${next.ref.output}" is "${next.info.type}"`,
        );
        continue;
      }
      // The carried value is stored with the codec of the stage that produces it.
      carryInfo.set(carryName, { type: initInfo.type, codec: next.info.codec });
      carry[carryName] = { init, next: next.ref, type: initInfo.type };
    }
    node.loop = {
      episodes: episodes as number,
      checkpointEvery: every as number,
      carry,
      body,
    };
  }

  /** Orders stages so each runs after its dependencies; ties keep file order. Reports cycles. */
  #order(nodes: StageNode[], path: KeyPath): StageNode[] {
    return orderStages(nodes, (cycle) =>
      this.report(
        [...path, cycle[0]],
        `Cycle between stages: ${[...cycle, cycle[0]].map((s) => `"${s}"`).join(" -> ")}`,
      ));
  }
}
