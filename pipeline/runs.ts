/**
 * The runs folder as a whole: run directories (`<runs>/<graph>/<run id>/`,
 * their ids and the `latest` link), the cache (`<runs>/.cache/`) and its locks. Marks the manifests of runs
 * whose process died as interrupted, and collects garbage: old runs, work
 * folders nobody will resume, temporary leftovers, unused locks, and cache
 * entries no remaining run uses.
 *
 * A live run holds an exclusive lock on `<run dir>/.lock` for its whole life,
 * and on `<cache>/locks/<key>.lock` while it computes a stage; the operating
 * system frees both when the process dies, which is how a dead run is told
 * from a live one.
 *
 * @module
 */

import { join } from "node:path";
import { writeFileAtomic } from "./cache.ts";
import { FileLock, isLocked } from "./lock.ts";

/** The lock a live run holds in its run directory. */
export const RUN_LOCK = ".lock";

/** Where the cache keeps the lock of the stage with this key. */
export function keyLockPath(cacheDir: string, key: string): string {
  return join(cacheDir, "locks", `${key}.lock`);
}

/** One run directory and what its manifest says. */
export interface RunInfo {
  graph: string;
  runId: string;
  dir: string;
  status: string;
  /** When it started (ISO time; "" when its manifest cannot be read). */
  startedAt: string;
  /** Cache keys of its stages, by what happened to them. */
  keys: { key: string; status: string }[];
  live: boolean;
}

async function readJson(path: string): Promise<Record<string, unknown> | undefined> {
  try {
    const value = JSON.parse(await Deno.readTextFile(path));
    return typeof value === "object" && value !== null ? value : undefined;
  } catch {
    return undefined;
  }
}

async function entries(dir: string): Promise<Deno.DirEntry[]> {
  const out: Deno.DirEntry[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) out.push(entry);
  } catch {
    // a folder that is missing has no entries
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Lists the runs under a runs folder (every graph, or one).
 *
 * @param runsDir The runs folder.
 * @param graph Only this graph's runs, when given.
 * @returns Runs per graph, oldest first (by start time, then id).
 */
export async function listRuns(runsDir: string, graph?: string): Promise<RunInfo[]> {
  const graphs = graph !== undefined
    ? [graph]
    : (await entries(runsDir)).filter((e) => e.isDirectory && !e.name.startsWith("."))
      .map((e) => e.name);
  const out: RunInfo[] = [];
  for (const name of graphs) {
    for (const entry of await entries(join(runsDir, name))) {
      if (!entry.isDirectory) continue;
      const dir = join(runsDir, name, entry.name);
      const manifest = await readJson(join(dir, "manifest.json"));
      const stages = (manifest?.stages ?? {}) as Record<string, { key?: string; status?: string }>;
      out.push({
        graph: name,
        runId: entry.name,
        dir,
        status: typeof manifest?.status === "string" ? manifest.status : "unknown",
        startedAt: typeof manifest?.startedAt === "string" ? manifest.startedAt : "",
        keys: Object.values(stages).filter((s) => typeof s.key === "string").map((s) => ({
          key: s.key!,
          status: s.status ?? "unknown",
        })),
        live: await isLocked(join(dir, RUN_LOCK)),
      });
    }
  }
  const order = (r: RunInfo) => `${r.graph}\0${r.startedAt}\0${r.runId}`;
  return out.sort((a, b) => (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0));
}

/**
 * Marks the manifest of every run that says "running" but whose process is
 * gone (its run lock is free) as "interrupted", with the stage it was in.
 *
 * @param runsDir The runs folder.
 * @param graph Only this graph's runs, when given.
 * @returns The run directories that were marked.
 */
export async function markDeadRuns(runsDir: string, graph?: string): Promise<string[]> {
  const marked: string[] = [];
  for (const run of await listRuns(runsDir, graph)) {
    if (run.status !== "running" || run.live) continue;
    const path = join(run.dir, "manifest.json");
    // Hold the run's lock while rewriting, so two runs do not both rewrite it.
    const lock = await FileLock.tryAcquire(join(run.dir, RUN_LOCK));
    if (!lock) continue;
    try {
      const manifest = await readJson(path);
      if (!manifest || manifest.status !== "running") continue;
      const stages = (manifest.stages ?? {}) as Record<string, Record<string, unknown>>;
      for (const stage of Object.values(stages)) {
        if (stage.status === "pending" && typeof stage.key === "string") {
          stage.status = "interrupted";
        }
      }
      manifest.status = "interrupted";
      manifest.interruptedAt = new Date().toISOString();
      manifest.interruption =
        "the process ended while the run was going (killed?); run the graph again to resume";
      await writeFileAtomic(path, JSON.stringify(manifest, null, 2));
      marked.push(run.dir);
    } finally {
      lock.release();
    }
  }
  return marked;
}

/** What {@linkcode collectGarbage} removed (or, with `dryRun`, would remove). */
export interface GcReport {
  /** Run directories of old runs. */
  runs: string[];
  /** Work folders (resumable checkpoints) that no kept run can resume. */
  work: string[];
  /** Cache entries that no kept run uses. */
  entries: string[];
  /** Temporary leftovers of killed writes. */
  leftovers: string[];
  /** Lock files nobody holds. */
  locks: string[];
  /** Manifests of dead runs marked as interrupted (done even with `dryRun`). */
  interrupted: string[];
  /** Bytes freed (or that would be). */
  bytes: number;
}

async function sizeOf(path: string): Promise<number> {
  try {
    const info = await Deno.lstat(path);
    if (!info.isDirectory) return info.size;
    let total = 0;
    for (const entry of await entries(path)) total += await sizeOf(join(path, entry.name));
    return total;
  } catch {
    return 0;
  }
}

/**
 * Collects garbage in a runs folder. Keeps the newest `keep` runs of each
 * graph, the run `latest` points at, and every live run; removes the other
 * runs, the cache entries none of the kept runs uses, work folders that no
 * kept run was in the middle of (or that hold no checkpoint), temporary
 * leftovers of killed writes, and lock files nobody holds. Nothing that a
 * live run holds a lock on is touched.
 *
 * @param runsDir The runs folder.
 * @param options `keep` runs per graph (default 10); `dryRun` lists without removing.
 * @returns What was (or would be) removed.
 */
export async function collectGarbage(
  runsDir: string,
  options: { keep?: number; dryRun?: boolean } = {},
): Promise<GcReport> {
  const keep = options.keep ?? 10;
  const cacheDir = join(runsDir, ".cache");
  const report: GcReport = {
    runs: [],
    work: [],
    entries: [],
    leftovers: [],
    locks: [],
    interrupted: await markDeadRuns(runsDir),
    bytes: 0,
  };
  const remove = async (path: string, list: string[]) => {
    list.push(path);
    report.bytes += await sizeOf(path);
    if (!options.dryRun) await Deno.remove(path, { recursive: true }).catch(() => {});
  };

  // Runs: the newest `keep` per graph, `latest`, and live ones stay.
  const runs = await listRuns(runsDir);
  const kept: RunInfo[] = [];
  for (const graph of new Set(runs.map((r) => r.graph))) {
    const ofGraph = runs.filter((r) => r.graph === graph);
    const latest = await Deno.readLink(join(runsDir, graph, "latest")).catch(() => "");
    ofGraph.forEach((run, i) => {
      if (run.live || run.runId === latest || i >= ofGraph.length - keep) kept.push(run);
    });
    for (const run of ofGraph) if (!kept.includes(run)) await remove(run.dir, report.runs);
  }

  // Keys still in use: every stage of a kept run; resumable: stages a kept run was in.
  const used = new Set(kept.flatMap((r) => r.keys.map((k) => k.key)));
  const resumable = new Set(
    kept.flatMap((r) =>
      r.keys.filter((k) => ["interrupted", "failed", "pending"].includes(k.status)).map((k) =>
        k.key
      )
    ),
  );
  const busy = (key: string) => isLocked(keyLockPath(cacheDir, key));

  for (const entry of await entries(join(cacheDir, "work"))) {
    const dir = join(cacheDir, "work", entry.name);
    if (await busy(entry.name)) continue;
    const files = (await entries(dir)).filter((e) => e.name !== JOURNAL);
    const finished = await Deno.stat(join(cacheDir, entry.name, "entry.json")).then(
      () => true,
      () => false,
    );
    if (files.length === 0 || finished || !resumable.has(entry.name)) {
      await remove(dir, report.work);
    }
  }
  for (const entry of await entries(cacheDir)) {
    const path = join(cacheDir, entry.name);
    if (/^[0-9a-f]{24}$/.test(entry.name)) {
      if (!used.has(entry.name) && !(await busy(entry.name))) await remove(path, report.entries);
    } else if (entry.name.startsWith(".tmp-") || entry.name.startsWith(".trash-")) {
      const key = entry.name.replace(/^\.(tmp|trash)-/, "").slice(0, 24);
      if (!(await busy(key))) await remove(path, report.leftovers);
    }
  }
  for (const entry of await entries(join(cacheDir, "locks"))) {
    const path = join(cacheDir, "locks", entry.name);
    const lock = await FileLock.tryAcquire(path);
    if (!lock) continue;
    report.locks.push(path);
    if (options.dryRun) lock.release();
    else await lock.releaseAndDelete();
  }
  return report;
}

/** The journal a running stage keeps in its work folder (see `EventLog.startJournal`). */
export const JOURNAL = ".events.jsonl";

/**
 * Points `<graphDir>/latest` at `runId` with a symbolic link, atomically.
 *
 * @param graphDir The graph's folder of runs.
 * @param runId The run directory's name in it.
 */
export async function linkLatest(graphDir: string, runId: string): Promise<void> {
  const latest = join(graphDir, "latest");
  const tmpLink = `${latest}.tmp-${runId}`;
  await Deno.symlink(runId, tmpLink);
  await Deno.rename(tmpLink, latest);
}

/** Run id: UTC time plus a short random suffix, sortable. */
export function newRunId(): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");
  return `${stamp}-${crypto.randomUUID().slice(0, 4)}`;
}
