/**
 * MAESTRO metadata: the official list of performances with their train /
 * validation / test split (Hawthorne et al., "Enabling Factorized Piano Music
 * Modeling and Generation with the MAESTRO Dataset", ICLR 2019). The release
 * ships the same table as CSV (`maestro-v3.0.0.csv`, RFC 4180 quoting) and as
 * column-oriented JSON (`{column: {rowIndex: value}}`).
 *
 * @module
 */

import { errorMessage } from "../../mod.ts";
import type { Split } from "../_music/types.ts";

/** One performance listed in the MAESTRO metadata. */
export interface MaestroEntry {
  /** Composer as MAESTRO spells it, e.g. `Frédéric Chopin`; several are joined by ` / `. */
  canonicalComposer: string;
  /** Title of the work as MAESTRO spells it. */
  canonicalTitle: string;
  /** The official split. */
  split: Split;
  /** Year of the competition recording. */
  year: number;
  /** MIDI file path relative to the dataset folder, e.g. `2018/MIDI-Unprocessed_...midi`. */
  midiFilename: string;
  /** Audio file path relative to the dataset folder (audio is not part of the MIDI release). */
  audioFilename: string;
  /** Length of the performance in seconds. */
  durationSec: number;
}

/** Entries and the rows that were skipped, one sentence each. */
export interface MaestroMetadata {
  /** Valid rows, in file order. */
  entries: MaestroEntry[];
  /** One sentence per skipped row, naming the file and row. */
  warnings: string[];
}

const SPLITS: readonly Split[] = ["train", "validation", "test"];
const COLUMNS = [
  "canonical_composer",
  "canonical_title",
  "split",
  "year",
  "midi_filename",
  "audio_filename",
  "duration",
] as const;
type Column = typeof COLUMNS[number];

/**
 * Parses CSV text (RFC 4180): fields separated by commas, quoted fields may
 * hold commas, line breaks and doubled quotes (`""` is one `"`); rows end with
 * LF or CRLF. A byte-order mark and a final line break are ignored.
 *
 * @param text The CSV text.
 * @returns Rows of fields.
 * @example
 * ```ts
 * import { parseCsv } from "./_maestro.ts";
 * console.log(parseCsv('a,"b, ""c"""\n')); // [["a", 'b, "c"']]
 * ```
 */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let rowHasContent = false;
  for (; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c !== '"') field += c;
      else if (text[i + 1] === '"') {
        field += '"';
        i++;
      } else quoted = false;
    } else if (c === '"') {
      quoted = true;
      rowHasContent = true;
    } else if (c === ",") {
      row.push(field);
      field = "";
      rowHasContent = true;
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      if (rowHasContent || field !== "") {
        row.push(field);
        rows.push(row);
      }
      row = [];
      field = "";
      rowHasContent = false;
    } else {
      field += c;
    }
  }
  if (rowHasContent || field !== "") {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

/** Metadata file names tried in order: the v3.0.0 names, then any other version. */
function metadataCandidates(dir: string): string[] {
  const preferred = ["maestro-v3.0.0.csv", "maestro-v3.0.0.json"];
  let others: string[] = [];
  try {
    others = [...Deno.readDirSync(dir)]
      .filter((e) =>
        e.isFile && /^maestro-v.*\.(csv|json)$/.test(e.name) && !preferred.includes(e.name)
      )
      .map((e) => e.name)
      // Newest version first (by numeric version), CSV before JSON.
      .sort((a, b) => {
        const stem = (name: string) => name.replace(/\.(csv|json)$/, "");
        return stem(b).localeCompare(stem(a), "en", { numeric: true }) ||
          Number(a.endsWith(".json")) - Number(b.endsWith(".json"));
      });
  } catch (error) {
    const reason = errorMessage(error);
    throw new Error(`Cannot read MAESTRO metadata in "${dir}": ${reason}`, { cause: error });
  }
  return [...preferred, ...others];
}

/**
 * Reads the MAESTRO metadata table from a dataset folder: `maestro-v3.0.0.csv`,
 * else `maestro-v3.0.0.json`, else any other `maestro-v*.csv` / `maestro-v*.json`
 * (newest version first). Rows with an unknown split, no MIDI file name, or a
 * year or duration that is not a number are skipped with a warning naming the row.
 *
 * @param dir The dataset folder, e.g. `data/maestro-v3.0.0`.
 * @returns Entries in file order, plus warnings.
 * @throws {Error} When no metadata file is there, it cannot be parsed, or a column is missing.
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { readMaestroMetadata } from "./_maestro.ts";
 * // A dataset folder with a three-row table (the real one lists 1,276 performances).
 * const dir = Deno.makeTempDirSync();
 * Deno.writeTextFileSync(
 *   join(dir, "maestro-v3.0.0.csv"),
 *   [
 *     "canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration",
 *     'Frédéric Chopin,"Ballade No. 1, Op. 23",test,2004,2004/a.midi,2004/a.wav,540.2',
 *     "Johann Sebastian Bach,Prelude in C,train,2006,2006/b.midi,2006/b.wav,120.5",
 *     "Anon,Sketch,unknown,2006,2006/c.midi,2006/c.wav,10",
 *   ].join("\n"),
 * );
 * const { entries, warnings } = readMaestroMetadata(dir);
 * console.log(entries.length, entries[0].canonicalTitle); // 2 "Ballade No. 1, Op. 23"
 * console.log(warnings); // [ 'maestro-v3.0.0.csv row 3 ("2006/c.midi"): unknown split "unknown"; skipped' ]
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function readMaestroMetadata(dir: string): MaestroMetadata {
  const candidates = metadataCandidates(dir);
  const file = candidates.find((name) => {
    try {
      return Deno.statSync(`${dir}/${name}`).isFile;
    } catch {
      return false;
    }
  });
  if (file === undefined) {
    throw new Error(
      `Cannot read MAESTRO metadata in "${dir}": found none of maestro-v3.0.0.csv, maestro-v3.0.0.json, maestro-v*.csv, maestro-v*.json`,
    );
  }
  const path = `${dir}/${file}`;
  const text = Deno.readTextFileSync(path);
  const rows = file.endsWith(".csv") ? csvRows(text, path) : jsonRows(text, path);
  const entries: MaestroEntry[] = [];
  const warnings: string[] = [];
  rows.forEach((row, index) => {
    const problem = (what: string) => {
      const name = row.midi_filename ? ` ("${row.midi_filename}")` : "";
      warnings.push(`${file} row ${index + 1}${name}: ${what}; skipped`);
    };
    const split = String(row.split ?? "");
    if (!SPLITS.includes(split as Split)) return problem(`unknown split "${split}"`);
    const midiFilename = String(row.midi_filename ?? "");
    if (midiFilename === "") return problem("no midi_filename");
    const year = Number(row.year);
    if (row.year === "" || row.year === undefined || !Number.isInteger(year)) {
      return problem(`year "${row.year ?? ""}" is not an integer`);
    }
    const durationSec = Number(row.duration);
    if (row.duration === "" || row.duration === undefined || !(durationSec >= 0)) {
      return problem(`duration "${row.duration ?? ""}" is not a number of seconds`);
    }
    entries.push({
      canonicalComposer: String(row.canonical_composer ?? ""),
      canonicalTitle: String(row.canonical_title ?? ""),
      split: split as Split,
      year,
      midiFilename,
      audioFilename: String(row.audio_filename ?? ""),
      durationSec,
    });
  });
  return { entries, warnings };
}

type RawRow = Partial<Record<Column, string | number | null>>;

function csvRows(text: string, path: string): RawRow[] {
  const [header, ...body] = parseCsv(text);
  if (header === undefined) {
    throw new Error(`Cannot read MAESTRO metadata "${path}": file is empty`);
  }
  const index = new Map(header.map((name, i) => [name.trim(), i]));
  for (const column of COLUMNS) {
    if (!index.has(column)) {
      throw new Error(`Cannot read MAESTRO metadata "${path}": no "${column}" column`);
    }
  }
  return body.map((fields) => Object.fromEntries(COLUMNS.map((c) => [c, fields[index.get(c)!]])));
}

function jsonRows(text: string, path: string): RawRow[] {
  let table: unknown;
  try {
    table = JSON.parse(text);
  } catch (error) {
    const reason = errorMessage(error);
    throw new Error(`Cannot read MAESTRO metadata "${path}": ${reason}`, { cause: error });
  }
  if (typeof table !== "object" || table === null || Array.isArray(table)) {
    throw new Error(`Cannot read MAESTRO metadata "${path}": expected an object of columns`);
  }
  const columns = table as Record<string, unknown>;
  for (const column of COLUMNS) {
    const values = columns[column];
    if (typeof values !== "object" || values === null) {
      throw new Error(`Cannot read MAESTRO metadata "${path}": no "${column}" column`);
    }
  }
  // Row keys are "0", "1", ...; the union over columns keeps rows with a missing cell.
  const keys = new Set<string>();
  for (const column of COLUMNS) {
    for (const key of Object.keys(columns[column] as object)) keys.add(key);
  }
  const ordered = [...keys].sort((a, b) => Number(a) - Number(b) || a.localeCompare(b));
  return ordered.map((key) =>
    Object.fromEntries(COLUMNS.map((c) => {
      const value = (columns[c] as Record<string, unknown>)[key];
      return [c, typeof value === "number" || typeof value === "string" ? value : undefined];
    }))
  );
}

/** Options of {@link selectMaestro}; every given filter must match. */
export interface MaestroSelection {
  /** Keep these splits (all when absent). */
  splits?: Split[];
  /** Keep these years (all when absent). */
  years?: number[];
  /** Keep entries whose composer contains any of these, ignoring case. */
  composers?: string[];
  /** Keep at most this many, after sorting by MIDI file name. */
  limit?: number;
}

/**
 * Selects MAESTRO entries, deterministically: the result is sorted by
 * `midiFilename` whatever the order of the input, then cut to `limit`.
 *
 * @param entries Entries from {@link readMaestroMetadata}.
 * @param selection Filters and limit.
 * @returns The matching entries.
 * @throws {Error} When `limit` is not a non-negative integer.
 * @example
 * ```ts
 * import { type MaestroEntry, selectMaestro } from "./_maestro.ts";
 * const entry = (composer: string, split: "train" | "test", file: string): MaestroEntry => ({
 *   canonicalComposer: composer,
 *   canonicalTitle: "A work",
 *   split,
 *   year: 2004,
 *   midiFilename: file,
 *   audioFilename: file.replace(".midi", ".wav"),
 *   durationSec: 300,
 * });
 * const entries = [
 *   entry("Frédéric Chopin", "test", "2004/c.midi"),
 *   entry("Franz Liszt", "test", "2004/b.midi"),
 *   entry("Frédéric Chopin", "train", "2004/a.midi"),
 *   entry("Frédéric Chopin", "test", "2004/d.midi"),
 * ];
 * const chopin = selectMaestro(entries, { splits: ["test"], composers: ["chopin"], limit: 1 });
 * console.log(chopin.map((e) => e.midiFilename)); // [ "2004/c.midi" ]
 * ```
 */
export function selectMaestro(
  entries: MaestroEntry[],
  selection: MaestroSelection = {},
): MaestroEntry[] {
  const { splits, years, limit } = selection;
  if (limit !== undefined && !(Number.isInteger(limit) && limit >= 0)) {
    throw new Error(`Cannot select MAESTRO entries: limit ${limit} is not a non-negative integer`);
  }
  const composers = selection.composers?.map((c) => c.toLowerCase());
  const selected = entries.filter((e) =>
    (splits === undefined || splits.includes(e.split)) &&
    (years === undefined || years.includes(e.year)) &&
    (composers === undefined ||
      composers.some((c) => e.canonicalComposer.toLowerCase().includes(c)))
  );
  selected.sort((a, b) =>
    a.midiFilename < b.midiFilename ? -1 : a.midiFilename > b.midiFilename ? 1 : 0
  );
  return limit === undefined ? selected : selected.slice(0, limit);
}
