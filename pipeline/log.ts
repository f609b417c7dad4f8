/**
 * Run logging: every log line, metric and stage event goes to the run's
 * `events.jsonl` and (for humans) to stderr; progress is a live bar on a
 * terminal and plain periodic lines otherwise.
 *
 * @module
 */

import type { Logger, ProgressUpdate } from "./plugin.ts";

/**
 * One line of `events.jsonl`. Lines kept from an earlier, killed attempt at a
 * stage that this run resumed carry `resumedFrom`: the id of the run that wrote them.
 */
export type RunEvent =
  | {
    time: string;
    type: "log";
    level: string;
    stage?: string;
    plugin?: string;
    message: string;
    data?: unknown;
    resumedFrom?: string;
  }
  | {
    time: string;
    type: "metric";
    stage: string;
    step: number;
    values: Record<string, number>;
    resumedFrom?: string;
  }
  | {
    time: string;
    type: "stage";
    stage: string;
    status: string;
    detail?: string;
    durationSec?: number;
  };

type Level = "debug" | "info" | "warn" | "error";
const LEVELS: Level[] = ["debug", "info", "warn", "error"];

/** Writes events to a file and human lines to stderr. */
export class EventLog {
  #file?: Deno.FsFile;
  #encoder = new TextEncoder();
  #minLevel: number;
  #isTerminal: boolean;
  #barShown = false;
  #plainProgress = new Map<string, { startSec: number; lastSec: number; printed: boolean }>();
  /** Seconds between progress lines when stderr is not a terminal. */
  readonly progressIntervalSec: number;
  /** Every metric recorded in this run, by stage label. */
  readonly metrics = new Map<string, { step: number; values: Record<string, number> }[]>();
  /** Metrics of earlier, killed attempts at stages this run resumed, by stage label. */
  #earlier = new Map<string, { step: number; values: Record<string, number> }[]>();
  /** While a stage runs: its journal in its work directory, and the run's id. */
  #journal?: { file: Deno.FsFile; runId: string };

  constructor(options: { quiet?: boolean; verbose?: boolean; progressIntervalSec?: number } = {}) {
    this.#minLevel = options.quiet ? 2 : options.verbose ? 0 : 1;
    this.#isTerminal = Deno.stderr.isTerminal();
    this.progressIntervalSec = options.progressIntervalSec ?? 10;
  }

  /** Starts writing `events.jsonl` (appending, so a resumed run keeps its history). */
  async open(path: string): Promise<void> {
    this.#file = await Deno.open(path, { create: true, append: true });
  }

  close(): void {
    this.stopJournal();
    this.#clearBar();
    this.#file?.close();
    this.#file = undefined;
  }

  #write(event: RunEvent): void {
    const line = this.#encoder.encode(JSON.stringify(event) + "\n");
    this.#file?.writeSync(line);
    if (this.#journal && event.type !== "stage") {
      const own = "resumedFrom" in event ? event : { ...event, run: this.#journal.runId };
      this.#journal.file.writeSync(this.#encoder.encode(JSON.stringify(own) + "\n"));
    }
  }

  /**
   * Starts a stage's journal: its log lines and metrics are also appended to
   * `path` (in the stage's work directory, which survives a killed run), after
   * the lines of earlier attempts that `path` already holds. Those are
   * replayed first: into this run's `events.jsonl`, marked with the run that
   * wrote them, and into the stage's metric history (see {@linkcode history}).
   *
   * @param path The journal file.
   * @param runId This run's id, stored with each line.
   * @returns The id of the run whose attempt was resumed, when lines were replayed.
   */
  async startJournal(path: string, runId: string): Promise<string | undefined> {
    this.stopJournal();
    const kept: RunEvent[] = [];
    for (const line of (await Deno.readTextFile(path).catch(() => "")).split("\n")) {
      let event: Record<string, unknown>;
      try {
        event = JSON.parse(line);
      } catch {
        continue; // empty, or cut off by the kill
      }
      const from = event.resumedFrom ?? event.run;
      if (typeof from !== "string" || (event.type !== "log" && event.type !== "metric")) continue;
      delete event.run;
      kept.push({ ...event, resumedFrom: from } as RunEvent);
    }
    const file = await Deno.open(path, { create: true, write: true, truncate: true });
    for (const event of kept) {
      const line = this.#encoder.encode(JSON.stringify(event) + "\n");
      this.#file?.writeSync(line);
      file.writeSync(line);
      if (event.type === "metric") {
        const list = this.#earlier.get(event.stage) ?? [];
        list.push({ step: event.step, values: event.values });
        this.#earlier.set(event.stage, list);
      }
    }
    this.#journal = { file, runId };
    const last = kept.at(-1);
    return last && "resumedFrom" in last ? last.resumedFrom : undefined;
  }

  /** Stops writing the stage's journal. */
  stopJournal(): void {
    this.#journal?.file.close();
    this.#journal = undefined;
  }

  /**
   * A stage label's whole metric history: what earlier attempts recorded
   * before the step where this run's attempt resumed, then what it recorded.
   *
   * @param label The stage label.
   */
  history(label: string): { step: number; values: Record<string, number> }[] {
    const now = this.metrics.get(label) ?? [];
    const before = this.#earlier.get(label) ?? [];
    if (now.length === 0) return [...before];
    const resumedAt = now[0].step;
    return [...before.filter((entry) => entry.step < resumedAt), ...now];
  }

  /** Labels with a metric history (this run's or an earlier attempt's). */
  historyLabels(): string[] {
    return [...new Set([...this.#earlier.keys(), ...this.metrics.keys()])];
  }

  #print(line: string): void {
    this.#clearBar();
    console.error(line);
  }

  #clearBar(): void {
    if (this.#barShown) {
      Deno.stderr.writeSync(this.#encoder.encode("\r\x1b[2K"));
      this.#barShown = false;
    }
  }

  log(
    level: Level,
    message: string,
    tags: { stage?: string; plugin?: string; data?: unknown } = {},
  ): void {
    this.#write({ time: new Date().toISOString(), type: "log", level, message, ...tags });
    if (LEVELS.indexOf(level) < this.#minLevel) return;
    const who = tags.stage ? `${tags.stage}${tags.plugin ? ` (${tags.plugin})` : ""}: ` : "";
    const mark = level === "warn" ? "warning: " : level === "error" ? "error: " : "";
    this.#print(`${mark}${who}${message}`);
  }

  /** A logger tagged with a stage and plugin. */
  logger(stage: string, plugin: string): Logger {
    const at = (level: Level) => (message: string, data?: Record<string, unknown>) =>
      this.log(level, message, { stage, plugin, data });
    return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
  }

  metric(stage: string, step: number, values: Record<string, number>): void {
    this.#write({ time: new Date().toISOString(), type: "metric", stage, step, values });
    const list = this.metrics.get(stage) ?? [];
    list.push({ step, values });
    this.metrics.set(stage, list);
  }

  stage(stage: string, status: string, detail?: string, durationSec?: number): void {
    this.#write({
      time: new Date().toISOString(),
      type: "stage",
      stage,
      status,
      detail,
      durationSec,
    });
  }

  /** Shows progress: a redrawn bar on a terminal, else a line every `progressIntervalSec`. */
  progress(stage: string, update: ProgressUpdate): void {
    if (this.#minLevel > 1) return;
    const total = Math.max(1, update.total);
    const share = Math.min(1, Math.max(0, update.done / total));
    const info = Object.entries(update.info ?? {})
      .map(([k, v]) => `${k}=${typeof v === "number" ? formatNumber(v) : v}`)
      .join(" ");
    const counts = `${update.done}/${update.total}${update.unit ? ` ${update.unit}` : ""}`;
    if (this.#isTerminal) {
      const width = 24;
      const filled = Math.round(share * width);
      const bar = `${"█".repeat(filled)}${"░".repeat(width - filled)}`;
      const line = `${stage} ${bar} ${(share * 100).toFixed(0).padStart(3)}% ${counts} ${info}`;
      const columns = (() => {
        try {
          return Deno.consoleSize().columns;
        } catch {
          return 120;
        }
      })();
      Deno.stderr.writeSync(this.#encoder.encode(`\r\x1b[2K${line.slice(0, columns - 1)}`));
      this.#barShown = true;
      return;
    }
    // Plain lines: none for short runs of progress (a loop body's stages), one every
    // progressIntervalSec for long ones, and a last line when a long one finishes.
    const now = performance.now() / 1000;
    const finished = update.done >= update.total;
    const state = this.#plainProgress.get(stage) ?? { startSec: now, lastSec: now, printed: false };
    this.#plainProgress.set(stage, state);
    if (finished) this.#plainProgress.delete(stage);
    const due = now - state.lastSec >= this.progressIntervalSec;
    if (!(due || (finished && state.printed))) return;
    state.lastSec = now;
    state.printed = true;
    console.error(`${stage}: ${(share * 100).toFixed(0)}% ${counts} ${info}`.trimEnd());
  }
}

/** Compact number for progress lines: 3 significant digits, no exponent for usual sizes. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) return String(value);
  const abs = Math.abs(value);
  if (abs >= 1000) return value.toFixed(0);
  if (abs >= 1) return value.toPrecision(4).replace(/\.?0+$/, "");
  if (abs === 0) return "0";
  return value.toPrecision(3);
}
