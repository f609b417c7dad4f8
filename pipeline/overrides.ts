/**
 * `--set PATH=VALUE` overrides of a graph document, applied before it is
 * validated (`deno task pipeline run --set stages.pretrain.with.epochs=2`).
 *
 * @module
 */

import { didYouMean, isMap, quoteList } from "./graph.ts";
import { type ConfigIssue, type KeyPath, type LocatedDocument, parseLocatedYaml } from "./yaml.ts";

/**
 * Applies one `--set PATH=VALUE` to a graph document before validation: the
 * value is parsed as YAML and set at the dotted path (a number is an index),
 * and its position says where it came from.
 *
 * @param doc The graph document, changed in place.
 * @param override `PATH=VALUE`, e.g. `stages.pretrain.with.epochs=2`.
 * @returns The problem, when the override is malformed or names a stage that
 *   is not in the graph.
 */
export function applyOverride(doc: LocatedDocument, override: string): ConfigIssue | undefined {
  const eq = override.indexOf("=");
  if (eq <= 0) {
    return {
      file: "--set",
      line: 0,
      col: 0,
      path: [],
      message: `Expected PATH=VALUE, received ${JSON.stringify(override)}`,
    };
  }
  const path: KeyPath = override.slice(0, eq).split(".").map((part) =>
    /^\d+$/.test(part) ? Number(part) : part
  );
  const parsed = parseLocatedYaml(override.slice(eq + 1), "--set");
  let target = doc.value as Record<string | number, unknown>;
  for (const [i, part] of path.slice(0, -1).entries()) {
    // A stage that is not in the graph is a typo: --set may add a whole stage
    // (`stages.x={use: ...}`), not a param of one that does not exist.
    const prefix = path.slice(0, i);
    const inStageMap = prefix.length === 1 && prefix[0] === "stages" ||
      prefix.length === 4 && prefix[0] === "stages" && prefix[2] === "loop" &&
        prefix[3] === "stages";
    if (inStageMap && isMap(target) && !Object.hasOwn(target, part)) {
      const stages = Object.keys(target);
      return {
        file: `--set ${override}`,
        line: 0,
        col: 0,
        path: path.slice(0, i + 1),
        message: `Unknown stage "${part}".${didYouMean(String(part), stages)} Stages: ${
          quoteList(stages)
        }`,
      };
    }
    // `model: model/lstm` given by name gets `with` through --set: keep the name as `use`.
    if (typeof target[part] === "string" && path[i + 1] === "with") {
      target[part] = { use: target[part] };
    }
    if (!isMap(target[part]) && !Array.isArray(target[part])) target[part] = {};
    target = target[part] as Record<string | number, unknown>;
  }
  target[path[path.length - 1]] = parsed.value;
  doc.positions.set(JSON.stringify(path), { file: `--set ${override}`, line: 0, col: 0 });
  return undefined;
}
