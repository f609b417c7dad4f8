/**
 * Generates a JSON Schema for graph files from the plugins' own declarations,
 * so editors (yaml-language-server) complete and check YAML:
 * `# yaml-language-server: $schema=./graph.schema.json`.
 *
 * @module
 */

import type { Registry } from "./graph.ts";
import { isStagePlugin, type Plugin } from "./plugin.ts";
import { type ComponentKind, fieldJsonSchema, type ParamsSchema } from "./schema.ts";

type Json = Record<string, unknown>;

/**
 * The top-level `backend` key: a word the registry expands (its values are
 * the enum of the param the word fills, e.g. tfjs's `name`) or a backend component.
 */
function backendSchema(registry: Registry, plugins: Plugin[]): Json {
  const probe = "\u0000";
  const expanded = registry.backend?.(probe);
  const plugin = plugins.find((p) => p.name === expanded?.use);
  const key = Object.entries(expanded?.with ?? {}).find(([, v]) => v === probe)?.[0];
  const field = key ? (plugin?.params as ParamsSchema | undefined)?.[key] : undefined;
  const words = field?.type === "string" && field.enum ? [...field.enum] : undefined;
  return {
    description: words
      ? `Backend: ${words.slice(0, -1).join(", ")} or ${words.at(-1)}`
      : "Backend component",
    anyOf: [
      ...(words ? [{ type: "string", enum: words }] : []),
      { $ref: "#/$defs/component-backend" },
    ],
  };
}

/**
 * Builds the schema.
 *
 * @param registry The built-in plugins.
 * @returns A JSON Schema (draft 2020-12) object.
 */
export async function graphJsonSchema(registry: Registry): Promise<Json> {
  const plugins: Plugin[] = [];
  for (const name of registry.names()) {
    const plugin = await registry.load(name);
    if (plugin) plugins.push(plugin);
  }
  const defs: Json = {};
  const paramsSchema = (params: ParamsSchema): Json => {
    const properties: Json = {};
    for (const [key, spec] of Object.entries(params)) {
      if (spec.type === "component") {
        properties[key] = { description: spec.description, $ref: `#/$defs/component-${spec.kind}` };
      } else if (spec.type === "components") {
        properties[key] = {
          description: spec.description,
          type: "array",
          items: { $ref: `#/$defs/component-${spec.kind}` },
        };
      } else {
        properties[key] = fieldJsonSchema(spec);
      }
    }
    return { type: "object", properties, additionalProperties: false };
  };
  // Component kinds come from the plugins that declare them.
  const kinds: ComponentKind[] = [
    ...new Set(plugins.filter((p) => !isStagePlugin(p)).map((p) => p.kind)),
  ].sort();
  for (const kind of kinds) {
    const members = plugins.filter((p) => !isStagePlugin(p) && p.kind === kind);
    defs[`component-${kind}`] = {
      anyOf: [
        { type: "string", enum: members.map((p) => p.name), description: `A ${kind} plugin` },
        { type: "string", pattern: "\\.(ts|js)$", description: "Path of a user plugin module" },
        ...members.map((p) => ({
          type: "object",
          description: p.description,
          properties: {
            use: { const: p.name },
            with: paramsSchema(p.params as ParamsSchema),
            weight: { type: "number", minimum: 0, description: "Weight in a weighted list" },
          },
          required: ["use"],
          additionalProperties: false,
        })),
        {
          type: "object",
          properties: {
            use: { type: "string", pattern: "\\.(ts|js)$" },
            with: { type: "object" },
            weight: { type: "number" },
          },
          required: ["use"],
        },
      ],
    };
  }
  const refPattern = "^[A-Za-z_][A-Za-z0-9_-]*\\.[A-Za-z_][A-Za-z0-9_-]*$";
  const stageVariants = plugins.filter(isStagePlugin).map((p) => ({
    type: "object",
    description: p.description,
    properties: {
      use: { const: p.name },
      description: { type: "string" },
      with: paramsSchema(p.params as ParamsSchema),
      in: {
        type: "object",
        properties: Object.fromEntries(
          Object.entries(p.inputs).map(([port, spec]) => [
            port,
            {
              type: "string",
              pattern: refPattern,
              description: `${spec.type}: ${spec.description}`,
            },
          ]),
        ),
        additionalProperties: false,
      },
    },
    required: ["use"],
    additionalProperties: false,
  }));
  const userStage = {
    type: "object",
    properties: {
      use: { type: "string", pattern: "\\.(ts|js)$", description: "Path of a user plugin module" },
      description: { type: "string" },
      with: { type: "object" },
      in: { type: "object", additionalProperties: { type: "string", pattern: refPattern } },
    },
    required: ["use"],
    additionalProperties: false,
  };
  defs.stage = { anyOf: [...stageVariants, userStage] };
  defs.loop = {
    type: "object",
    properties: {
      description: { type: "string" },
      loop: {
        type: "object",
        properties: {
          episodes: { type: "integer", minimum: 1, description: "How many times the body runs" },
          checkpointEvery: {
            type: "integer",
            minimum: 1,
            default: 10,
            description: "Episodes between resumable checkpoints",
          },
          carry: {
            type: "object",
            description: "Values carried from one episode to the next",
            additionalProperties: {
              type: "object",
              properties: {
                init: {
                  type: "string",
                  pattern: refPattern,
                  description: "Value before the first episode",
                },
                next: {
                  type: "string",
                  pattern: refPattern,
                  description: "Body output that becomes the next value",
                },
              },
              required: ["init", "next"],
              additionalProperties: false,
            },
          },
          stages: { type: "object", additionalProperties: { $ref: "#/$defs/stage" } },
        },
        required: ["episodes", "carry", "stages"],
        additionalProperties: false,
      },
    },
    required: ["loop"],
    additionalProperties: false,
  };
  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    title: "HarmonyRL graph",
    type: "object",
    properties: {
      name: { type: "string", description: "Graph name; runs go to runs/<name>/" },
      description: { type: "string" },
      seed: { type: "integer", minimum: 0, description: "Seed of every stage's RNG" },
      backend: backendSchema(registry, plugins),
      stages: {
        type: "object",
        additionalProperties: { anyOf: [{ $ref: "#/$defs/stage" }, { $ref: "#/$defs/loop" }] },
      },
    },
    required: ["stages"],
    additionalProperties: false,
    $defs: defs,
  };
}
