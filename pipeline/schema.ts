/**
 * The params schema language of plugins: small, explicit, and serialisable to
 * JSON Schema. Every field has a description and (for optional fields) a
 * default, so `plugins` listings and editor completion come from the same
 * declaration that validation uses.
 *
 * @module
 */

import { resolve } from "node:path";
/**
 * Kinds of plugin that can be nested inside a stage's `with` as components.
 * The runner knows none by name: the plugins declare them (`"model"`,
 * `"tokenizer"`, `"reward"`, `"backend"` among the built-ins).
 */
export type ComponentKind = string;

interface BaseSpec {
  /** One sentence shown in `plugins` listings, the README and editor hovers. */
  description: string;
}

/** A number, optionally an integer and bounded. */
export interface NumberSpec extends BaseSpec {
  type: "number";
  default?: number;
  min?: number;
  max?: number;
  integer?: boolean;
}

/** A string, optionally one of a fixed set. */
export interface StringSpec extends BaseSpec {
  type: "string";
  default?: string;
  enum?: readonly string[];
  /**
   * The string is a file or folder the plugin reads (`"read"`) or writes
   * (`"write"`). The runner's sandbox grants the plugin access to exactly the
   * paths given in the graph (relative ones against the working directory),
   * and refuses to write into system folders.
   */
  path?: "read" | "write";
}

/** A boolean flag. */
export interface BooleanSpec extends BaseSpec {
  type: "boolean";
  default?: boolean;
}

/** A list of values that all follow `items`. */
export interface ArraySpec extends BaseSpec {
  type: "array";
  items: ParamSpec;
  default?: readonly unknown[];
  minItems?: number;
}

/**
 * A nested component plugin (a model, a tokenizer, a reward term, a backend),
 * written in YAML as `{use: NAME, with: {...}}` or just `NAME`. At run time the
 * plugin receives what the component's `create()` returned.
 */
export interface ComponentSpec extends BaseSpec {
  type: "component";
  kind: ComponentKind;
  default?: string | ComponentRef;
}

/**
 * A weighted list of components, written in YAML as a list of
 * `{use: NAME, weight: 1.0, with: {...}}` (or just `NAME`, weight 1).
 * At run time the plugin receives `WeightedComponent[]`.
 */
export interface ComponentListSpec extends BaseSpec {
  type: "components";
  kind: ComponentKind;
  default?: ReadonlyArray<string | ComponentRef>;
  minItems?: number;
}

/** One field of a params schema. */
export type ParamSpec =
  | NumberSpec
  | StringSpec
  | BooleanSpec
  | ArraySpec
  | ComponentSpec
  | ComponentListSpec;

/** A params schema: field name to spec. YAML keys are exactly these names. */
export type ParamsSchema = Record<string, ParamSpec>;

/** A component as written in YAML before it is resolved. */
export interface ComponentRef {
  use: string;
  with?: Record<string, unknown>;
  weight?: number;
}

/**
 * A component spec with every param filled in: what the runner gives a
 * component's `create()` as its own description, and what checkpoints and
 * corpora record so that `ctx.component(spec, kind)` can rebuild it.
 */
export interface FullComponentRef {
  /** A built-in plugin name, or the absolute path of a user's module. */
  use: string;
  /** Every param, defaults included; nested components as their own full specs. */
  with: Record<string, unknown>;
}

/** A resolved entry of a `components` param. */
export interface WeightedComponent<T = unknown> {
  /** The plugin name, or the path it was loaded from. */
  name: string;
  weight: number;
  component: T;
}

type InferOne<S> = S extends NumberSpec ? number
  : S extends StringSpec ? (S["enum"] extends readonly (infer E)[] ? E : string)
  : S extends BooleanSpec ? boolean
  : S extends ArraySpec ? InferOne<S["items"]>[]
  : S extends ComponentListSpec ? WeightedComponent[]
  : S extends ComponentSpec ? unknown
  : never;

/** The params object a plugin's `run` or `create` receives for schema `S`. */
export type Infer<S extends ParamsSchema> = { [K in keyof S]: InferOne<S[K]> };

/**
 * Builders for params schemas. They only fill in `type`, so declarations read
 * as what they are: `epochs: p.integer({ default: 2, min: 1, description: "..." })`.
 */
export const p = {
  /** A number field. */
  number<const S extends Omit<NumberSpec, "type">>(spec: S): S & { type: "number" } {
    return { ...spec, type: "number" };
  },
  /** An integer field (a number with `integer: true`). */
  integer<const S extends Omit<NumberSpec, "type" | "integer">>(
    spec: S,
  ): S & { type: "number"; integer: true } {
    return { ...spec, type: "number", integer: true };
  },
  /** A string field, optionally restricted by `enum`. */
  string<const S extends Omit<StringSpec, "type">>(spec: S): S & { type: "string" } {
    return { ...spec, type: "string" };
  },
  /** A boolean field. */
  boolean<const S extends Omit<BooleanSpec, "type">>(spec: S): S & { type: "boolean" } {
    return { ...spec, type: "boolean" };
  },
  /** A list field. */
  array<const S extends Omit<ArraySpec, "type">>(spec: S): S & { type: "array" } {
    return { ...spec, type: "array" };
  },
  /** A nested component plugin of the given kind. */
  component<const S extends Omit<ComponentSpec, "type">>(spec: S): S & { type: "component" } {
    return { ...spec, type: "component" };
  },
  /** A weighted list of component plugins of the given kind. */
  components<const S extends Omit<ComponentListSpec, "type">>(
    spec: S,
  ): S & { type: "components" } {
    return { ...spec, type: "components" };
  },
};

/** One problem found in a params object, located by key path relative to it. */
export interface ParamIssue {
  /** Key path below the params object, e.g. `["terms", 0, "weight"]`. */
  path: (string | number)[];
  message: string;
}

/** Describes a value for messages: `"high"`, `3`, `a list`, `nothing`. */
export function describeValue(value: unknown): string {
  if (value === undefined || value === null) return "nothing";
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a map";
  return String(value);
}

/** What a spec expects, for messages: `a number >= 0`, `one of "a", "b"`. */
export function describeSpec(spec: ParamSpec): string {
  switch (spec.type) {
    case "number": {
      const what = spec.integer ? "an integer" : "a number";
      const bounds: string[] = [];
      if (spec.min !== undefined) bounds.push(`>= ${spec.min}`);
      if (spec.max !== undefined) bounds.push(`<= ${spec.max}`);
      return bounds.length === 0 ? what : `${what} ${bounds.join(" and ")}`;
    }
    case "string":
      return spec.enum
        ? `one of ${spec.enum.map((v) => JSON.stringify(v)).join(", ")}`
        : "a string";
    case "boolean":
      return "true or false";
    case "array":
      return `a list of ${describeSpec(spec.items).replace(/^an? /, "")}s`;
    case "component":
      return `a ${spec.kind} plugin name or {use, with}`;
    case "components":
      return `a list of ${spec.kind} plugins ({use, weight, with})`;
  }
}

/** Folders of the operating system, never written into (their temp folders excepted). */
const SYSTEM_FOLDERS = [
  "/bin",
  "/boot",
  "/dev",
  "/etc",
  "/lib",
  "/lib32",
  "/lib64",
  "/libx32",
  "/proc",
  "/run",
  "/sbin",
  "/sys",
  "/usr",
  "/var",
  "/System",
  "/Library",
  "/Applications",
  "/private",
];
const TEMP_FOLDERS = ["/tmp", "/var/tmp", "/var/folders", "/private/tmp", "/private/var/folders"];

/**
 * The system folder a path is in, or undefined. `/` itself counts, and so do
 * `/etc`, `/usr`, `/var` and the like (but not their temp folders), and
 * Windows's own folder.
 *
 * @param path An absolute path, or one relative to the working directory.
 * @returns The system folder, e.g. `"/"` or `"/etc"`.
 */
export function systemFolder(path: string): string | undefined {
  const full = resolve(path).replace(/\\/g, "/").replace(/\/+$/, "") || "/";
  const within = (folder: string) => full === folder || full.startsWith(`${folder}/`);
  if (full === "/" || /^[A-Za-z]:$/.test(full)) return full === "/" ? "/" : `${full}/`;
  if (/^[A-Za-z]:\/(windows|program files)/i.test(full)) return full.slice(0, 3);
  if (TEMP_FOLDERS.some(within)) return undefined;
  return SYSTEM_FOLDERS.find(within);
}

/**
 * Checks a plain (non-component) value against a spec.
 *
 * @param spec The field's spec; component specs are checked by the graph loader.
 * @param value The value from YAML.
 * @param path Key path used in the issues returned.
 * @returns The problems found; empty when the value is valid.
 */
export function checkValue(
  spec: ParamSpec,
  value: unknown,
  path: (string | number)[] = [],
): ParamIssue[] {
  const bad = (): ParamIssue[] => [{
    path,
    message: `Expected ${describeSpec(spec)}, received ${describeValue(value)}`,
  }];
  switch (spec.type) {
    case "number":
      if (typeof value !== "number" || !Number.isFinite(value)) return bad();
      if (spec.integer && !Number.isInteger(value)) return bad();
      if (spec.min !== undefined && value < spec.min) return bad();
      if (spec.max !== undefined && value > spec.max) return bad();
      return [];
    case "string": {
      if (typeof value !== "string") return bad();
      if (spec.enum && !spec.enum.includes(value)) return bad();
      const system = spec.path === "write" && value !== "" ? systemFolder(value) : undefined;
      if (system !== undefined) {
        return [{
          path,
          message: `Expected a folder of your own, received ${
            describeValue(value)
          }: it is in the system folder "${system}", and HarmonyRL never writes there`,
        }];
      }
      return [];
    }
    case "boolean":
      return typeof value === "boolean" ? [] : bad();
    case "array": {
      if (!Array.isArray(value)) return bad();
      if (spec.minItems !== undefined && value.length < spec.minItems) {
        return [{
          path,
          message: `Expected at least ${spec.minItems} item(s), received ${value.length}`,
        }];
      }
      return value.flatMap((item, i) => checkValue(spec.items, item, [...path, i]));
    }
    case "component":
    case "components":
      return [];
  }
}

/** JSON Schema (draft 2020-12 subset) for one plain field. Components are given by the caller. */
export function fieldJsonSchema(spec: ParamSpec): Record<string, unknown> {
  const out: Record<string, unknown> = { description: spec.description };
  if ("default" in spec && spec.default !== undefined) out.default = spec.default;
  switch (spec.type) {
    case "number":
      out.type = spec.integer ? "integer" : "number";
      if (spec.min !== undefined) out.minimum = spec.min;
      if (spec.max !== undefined) out.maximum = spec.max;
      break;
    case "string":
      out.type = "string";
      if (spec.enum) out.enum = [...spec.enum];
      break;
    case "boolean":
      out.type = "boolean";
      break;
    case "array":
      out.type = "array";
      out.items = fieldJsonSchema(spec.items);
      break;
    case "component":
    case "components":
      break;
  }
  return out;
}
