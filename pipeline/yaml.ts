/**
 * YAML with source positions: the parsed value plus the line and column of
 * every key and value, so that config errors point at the right place.
 *
 * @module
 */

import { isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import type { Node } from "yaml";

/** A key path into a parsed document, e.g. `["stages", "reward", "with", "weight"]`. */
export type KeyPath = (string | number)[];

/** Where something is: a file (or `--set`), 1-based line and column. */
export interface Position {
  file: string;
  line: number;
  col: number;
}

/** A problem in a config, located and ready to print. */
export interface ConfigIssue extends Position {
  path: KeyPath;
  message: string;
}

/** Formats a key path as `stages.reward.with.terms[0].weight`. */
export function formatPath(path: KeyPath): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out === "" ? part : `.${part}`;
  }
  return out;
}

/** Formats an issue as `configs/x.yaml:14:12 stages.reward.with.weight: Expected ...`. */
export function formatIssue(issue: ConfigIssue): string {
  const where = issue.line > 0 ? `${issue.file}:${issue.line}:${issue.col}` : issue.file;
  const path = issue.path.length > 0 ? ` ${formatPath(issue.path)}` : "";
  return `${where}${path}: ${issue.message}`;
}

/** A parsed YAML document with positions. */
export interface LocatedDocument {
  file: string;
  value: unknown;
  /** Position of the value at each path (the key's position for map entries). */
  positions: Map<string, Position>;
  /** Syntax errors; when non-empty, `value` may be partial. */
  issues: ConfigIssue[];
}

const pathKey = (path: KeyPath): string => JSON.stringify(path);

/**
 * Parses YAML text, keeping the position of every value.
 *
 * @param text The YAML source.
 * @param file Name used in positions (the path as the user gave it).
 * @returns The value, a position map and any syntax errors.
 */
export function parseLocatedYaml(text: string, file: string): LocatedDocument {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const positions = new Map<string, Position>();
  const at = (offset: number): Position => {
    const { line, col } = lineCounter.linePos(offset);
    return { file, line, col };
  };
  // After the first syntax error the parser's idea of the structure is unreliable, and one
  // tab can produce a dozen messages about columns: report the first, and count the rest.
  // Duplicate keys are found below, with their names and paths.
  const syntax = doc.errors.filter((error) => error.code !== "DUPLICATE_KEY");
  const issues: ConfigIssue[] = syntax.slice(0, 1).map((error) => ({
    ...at(error.pos[0]),
    path: [],
    message: `Invalid YAML: ${error.message.split("\n")[0]}${
      syntax.length > 1
        ? ` (${syntax.length - 1} more YAML error(s) after it, most likely caused by this one)`
        : ""
    }`,
  }));

  const walk = (node: Node | null | undefined, path: KeyPath, keyOffset?: number): unknown => {
    const offset = keyOffset ?? node?.range?.[0];
    if (offset !== undefined) positions.set(pathKey(path), at(offset));
    if (isMap(node)) {
      const out: Record<string, unknown> = {};
      for (const pair of node.items) {
        const keyNode = pair.key as Node | null;
        const key = isScalar(keyNode) ? String(keyNode.value) : String(keyNode);
        if (Object.hasOwn(out, key)) {
          const first = positions.get(pathKey([...path, key]));
          issues.push({
            ...at(keyNode?.range?.[0] ?? offset ?? 0),
            path: [...path, key],
            message: `Duplicate key "${key}": it is already defined${
              first ? ` at line ${first.line}` : ""
            } (YAML map keys must be unique)`,
          });
          continue;
        }
        out[key] = walk(pair.value as Node | null, [...path, key], keyNode?.range?.[0]);
      }
      return out;
    }
    if (isSeq(node)) {
      return node.items.map((item, i) => walk(item as Node | null, [...path, i]));
    }
    if (isScalar(node)) return node.value;
    return node == null ? null : (node as { toJSON?: () => unknown }).toJSON?.();
  };
  const value = walk(doc.contents as Node | null, []);
  return { file, value, positions, issues };
}

/**
 * Finds the position of `path` in a document, falling back to the nearest
 * parent that has one (a missing key is reported where its map starts).
 */
export function positionOf(doc: LocatedDocument, path: KeyPath): Position {
  for (let n = path.length; n >= 0; n--) {
    const found = doc.positions.get(pathKey(path.slice(0, n)));
    if (found) return found;
  }
  return { file: doc.file, line: 1, col: 1 };
}

/** Records that the value at `path` came from somewhere else (a `--set` override). */
export function setPosition(doc: LocatedDocument, path: KeyPath, position: Position): void {
  doc.positions.set(pathKey(path), position);
}
