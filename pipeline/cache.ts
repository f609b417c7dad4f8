/**
 * The stage cache. A stage's outputs are stored under a key that hashes what
 * determines them (DVC's approach): plugin name and version, canonical params
 * with defaults filled in, the content hashes of its inputs, and its seed.
 * Cosmetic fields (descriptions, stage order) are not part of the key.
 * Entries are written to a temporary directory and renamed into place, so a
 * killed run never leaves a half-written entry.
 *
 * @module
 */

import { dirname, join } from "node:path";
import type { ArtifactCodec, CodecContext } from "./plugin.ts";

/** What a cache key is made of; stored beside the entry to explain re-runs. */
export interface KeyParts {
  plugin: string;
  version: string;
  params: unknown;
  inputs: Record<string, string>;
  seed: number;
  /** Extra parts, e.g. a loop's body or a user plugin's source hash. */
  extra?: unknown;
  /** What the stage reads besides its inputs, from its plugin's `fingerprint(params)`. */
  sources?: unknown;
}

/** A stored entry: its key parts and the content hash of each output. */
export interface CacheEntry {
  key: string;
  parts: KeyParts;
  outputs: Record<string, string>;
  createdAt: string;
  durationSec: number;
  /** Metrics the stage recorded, by stage label (a loop has one label per body stage). */
  metrics?: Record<string, { step: number; values: Record<string, number> }[]>;
  /** Files (relative paths) the stage wrote into its run directory. */
  published?: string[];
  /** What the stage attached to its manifest entry with `ctx.note()`. */
  notes?: Record<string, unknown>;
}

/** JSON with object keys sorted, so equal values always serialise equally. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      return Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]]));
    }
    return v;
  });
}

/** Every file under `dir` (relative paths) with its modification time in ms. */
export async function listFiles(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const walk = async (sub: string) => {
    for await (const entry of Deno.readDir(join(dir, sub))) {
      const rel = sub === "" ? entry.name : `${sub}/${entry.name}`;
      if (entry.isDirectory) await walk(rel);
      else if (entry.isFile) out.set(rel, (await Deno.stat(join(dir, rel))).mtime?.getTime() ?? 0);
    }
  };
  await walk("").catch(() => {});
  return out;
}

/** Hex SHA-256 of bytes or text. */
export async function sha256(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The cache key of a stage: a short hash of its canonical key parts. */
export async function cacheKey(parts: KeyParts): Promise<string> {
  return (await sha256(canonicalJson(parts))).slice(0, 24);
}

/** Content hash of a directory: every file's relative path and bytes, in sorted order. */
export async function hashDir(dir: string): Promise<string> {
  const files: string[] = [];
  const walk = async (sub: string) => {
    const entries = [];
    for await (const entry of Deno.readDir(join(dir, sub))) entries.push(entry);
    entries.sort((a, b) => a.name < b.name ? -1 : 1);
    for (const entry of entries) {
      const rel = sub === "" ? entry.name : `${sub}/${entry.name}`;
      if (entry.isDirectory) await walk(rel);
      else files.push(rel);
    }
  };
  await walk("");
  const parts: string[] = [];
  for (const rel of files) {
    parts.push(`${rel}:${await sha256(await Deno.readFile(join(dir, rel)))}`);
  }
  return (await sha256(parts.join("\n"))).slice(0, 24);
}

/** At most six changes, then how many more: a reason stays one readable line. */
function firstChanges(changes: readonly string[]): string {
  const shown = changes.slice(0, 6).join(", ");
  return changes.length > 6 ? `${shown} and ${changes.length - 6} more` : shown;
}

/** Explains, in one line, why `now` differs from `before`. */
export function explainChange(before: KeyParts | undefined, now: KeyParts): string {
  if (!before) return "no cached result";
  const reasons: string[] = [];
  if (before.plugin !== now.plugin) reasons.push(`plugin "${before.plugin}" -> "${now.plugin}"`);
  if (before.version !== now.version) reasons.push(`version ${before.version} -> ${now.version}`);
  if (before.seed !== now.seed) reasons.push(`seed ${before.seed} -> ${now.seed}`);
  const changedParams = diffKeys(before.params, now.params);
  if (changedParams.length > 0) reasons.push(`params changed: ${firstChanges(changedParams)}`);
  const inputs = new Set([...Object.keys(before.inputs), ...Object.keys(now.inputs)]);
  const changedInputs = [...inputs].filter((k) => before.inputs[k] !== now.inputs[k]);
  if (changedInputs.length > 0) reasons.push(`input changed: ${changedInputs.join(", ")}`);
  const sources = explainSources(before.sources, now.sources);
  if (sources) reasons.push(sources);
  if (canonicalJson(before.extra) !== canonicalJson(now.extra)) {
    // A loop's body (its stages' params) or a user plugin's source hash.
    const changed = typeof now.extra === "object" ? diffKeys(before.extra, now.extra) : [];
    reasons.push(
      changed.length > 0 ? `loop changed: ${firstChanges(changed)}` : "plugin source changed",
    );
  }
  return reasons.length > 0 ? reasons.join("; ") : "no cached result";
}

/** Lists the leaf paths where two JSON values differ, as `a.b (1 -> 2)`. */
function diffKeys(a: unknown, b: unknown, prefix = ""): string[] {
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;
  if (isObj(a) && isObj(b) && Array.isArray(a) === Array.isArray(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].sort().flatMap((k) => diffKeys(a[k], b[k], prefix ? `${prefix}.${k}` : k));
  }
  if (canonicalJson(a) === canonicalJson(b)) return [];
  const show = (v: unknown) => {
    const text = canonicalJson(v);
    return text === undefined ? "unset" : text.length > 40 ? `${text.slice(0, 37)}...` : text;
  };
  return [`${prefix || "(all)"} ${show(a)} -> ${show(b)}`];
}

/** The on-disk cache: `<root>/<key>/` entries plus an index of the last key per stage. */
export class Cache {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  entryDir(key: string): string {
    return join(this.root, key);
  }

  /** Directory that survives a killed run for this key: resumable checkpoints go here. */
  async workDir(key: string): Promise<string> {
    const dir = join(this.root, "work", key);
    await Deno.mkdir(dir, { recursive: true });
    return dir;
  }

  /** The entry for `key`, or undefined when absent or incomplete. */
  async get(key: string): Promise<CacheEntry | undefined> {
    try {
      return JSON.parse(await Deno.readTextFile(join(this.entryDir(key), "entry.json")));
    } catch {
      return undefined;
    }
  }

  /** Loads one output of an entry with its codec. */
  async load(
    key: string,
    port: string,
    codec: ArtifactCodec,
    context?: CodecContext,
  ): Promise<unknown> {
    return await codec.load(join(this.entryDir(key), "outputs", port), context);
  }

  /**
   * Stores outputs atomically: writes to a temporary directory, then renames.
   *
   * @param key The entry's key.
   * @param entry Key parts, outputs with their codecs, duration, metrics, and
   *   files the stage wrote into the run directory (`published`), copied so a
   *   later run that takes the stage from the cache shows them too.
   * @returns The entry, with the content hash of each output.
   */
  async put(
    key: string,
    entry: {
      parts: KeyParts;
      outputs: Map<string, { value: unknown; codec: ArtifactCodec }>;
      durationSec: number;
      metrics?: CacheEntry["metrics"];
      published?: { dir: string; files: string[] };
      notes?: Record<string, unknown>;
    },
  ): Promise<CacheEntry> {
    await Deno.mkdir(this.root, { recursive: true });
    const tmp = await Deno.makeTempDir({ dir: this.root, prefix: `.tmp-${key}-` });
    try {
      const hashes: Record<string, string> = {};
      for (const [port, { value, codec }] of entry.outputs) {
        const dir = join(tmp, "outputs", port);
        await Deno.mkdir(dir, { recursive: true });
        await codec.save(value, dir);
        hashes[port] = await hashDir(dir);
      }
      for (const file of entry.published?.files ?? []) {
        const target = join(tmp, "published", file);
        await Deno.mkdir(dirname(target), { recursive: true });
        await Deno.copyFile(join(entry.published!.dir, file), target);
      }
      const stored: CacheEntry = {
        key,
        parts: entry.parts,
        outputs: hashes,
        createdAt: new Date().toISOString(),
        durationSec: entry.durationSec,
        metrics: entry.metrics,
        published: entry.published?.files ?? [],
        notes: entry.notes,
      };
      await Deno.writeTextFile(join(tmp, "entry.json"), JSON.stringify(stored, null, 2));
      // An entry made again (--force) is moved aside first: a directory cannot be renamed
      // over a full one, and the old one is gone only once the new one is in place.
      const trash = `${this.root}/.trash-${key}-${crypto.randomUUID().slice(0, 8)}`;
      const replaced = await Deno.rename(this.entryDir(key), trash).then(() => true, () => false);
      await Deno.rename(tmp, this.entryDir(key));
      if (replaced) await Deno.remove(trash, { recursive: true }).catch(() => {});
      return stored;
    } catch (error) {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      throw error;
    }
  }

  /** Copies the files a cached stage had written into its run directory into `runDir`. */
  async restorePublished(entry: CacheEntry, runDir: string): Promise<void> {
    for (const file of entry.published ?? []) {
      const target = join(runDir, file);
      await Deno.mkdir(dirname(target), { recursive: true });
      await Deno.copyFile(join(this.entryDir(entry.key), "published", file), target);
    }
  }

  /** The key parts last used for a stage of a graph, to explain why it re-runs. */
  async lastParts(graph: string, stage: string): Promise<KeyParts | undefined> {
    try {
      return JSON.parse(await Deno.readTextFile(join(this.root, "index", graph, `${stage}.json`)));
    } catch {
      return undefined;
    }
  }

  async setLastParts(graph: string, stage: string, parts: KeyParts): Promise<void> {
    const dir = join(this.root, "index", graph);
    await Deno.mkdir(dir, { recursive: true });
    await writeFileAtomic(join(dir, `${stage}.json`), JSON.stringify(parts));
  }
}

/**
 * Writes a file atomically: into a hidden temporary sibling (`.name.tmp-<random>`), then renamed
 * over the target, so that a killed run never leaves half a file and readers see the old file or
 * the new one. The temporary file is removed when writing fails.
 *
 * @param path The file to write.
 * @param data Text (UTF-8) or bytes.
 * @throws {Error} What writing or renaming threw.
 * @example
 * ```ts
 * import { writeFileAtomic } from "../mod.ts";
 * const dir = await Deno.makeTempDir();
 * await writeFileAtomic(`${dir}/a.json`, JSON.stringify({ step: 1 }));
 * console.log(await Deno.readTextFile(`${dir}/a.json`)); // {"step":1}
 * ```
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const slash = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  const tmp = `${path.slice(0, slash + 1)}.${path.slice(slash + 1)}.tmp-${
    crypto.randomUUID().slice(0, 8)
  }`;
  try {
    if (typeof data === "string") await Deno.writeTextFile(tmp, data);
    else await Deno.writeFile(tmp, data);
    await Deno.rename(tmp, path);
  } catch (error) {
    await Deno.remove(tmp).catch(() => {});
    throw error;
  }
}

const isFlatMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v) &&
  Object.values(v).every((x) => typeof x !== "object" || x === null);

/** `"a.mid", "b.mid" and 3 more`. */
function someNames(names: string[]): string {
  const shown = names.slice(0, 3).map((n) => `"${n}"`).join(", ");
  return names.length > 3 ? `${shown} and ${names.length - 3} more` : shown;
}

/**
 * Says in one clause how two fingerprints differ: for maps of files, which
 * were added, changed and removed.
 *
 * @param before The fingerprint the cached result was made with (undefined: none).
 * @param now The current fingerprint.
 * @returns E.g. `files changed: added "c.mid"; changed "a.mid"; removed "b.mid"`, or "" when equal.
 */
export function explainSources(before: unknown, now: unknown): string {
  if (canonicalJson(before) === canonicalJson(now)) return "";
  if (!isFlatMap(before) || !isFlatMap(now)) return "what the stage reads changed";
  const added = Object.keys(now).filter((k) => !(k in before));
  const removed = Object.keys(before).filter((k) => !(k in now));
  const changed = Object.keys(now).filter((k) => k in before && before[k] !== now[k]);
  const parts = [
    added.length > 0 ? `added ${someNames(added)}` : "",
    changed.length > 0 ? `changed ${someNames(changed)}` : "",
    removed.length > 0 ? `removed ${someNames(removed)}` : "",
  ].filter(Boolean);
  return `files changed: ${parts.join("; ")}`;
}
