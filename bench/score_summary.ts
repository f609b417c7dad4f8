/**
 * Mean total and terms of a `scores.json` (configs/score.yaml) per kind of
 * piece, the kind being the file name's prefix before the last `-`.
 *
 *   deno run -A bench/score_summary.ts runs/score/latest/scores.json
 *
 * @module
 */

const [path] = Deno.args;
const entries = JSON.parse(Deno.readTextFileSync(path)) as Array<Record<string, number | string>>;
const keys = Object.keys(entries[0]).filter((k) => k !== "id");
const groups = new Map<string, Array<Record<string, number | string>>>();
for (const e of entries) {
  const kind = String(e.id).replace(/-\d+$/, "");
  groups.set(kind, [...(groups.get(kind) ?? []), e]);
}
const rows = [...groups.entries()].map(([kind, list]) => ({
  kind,
  n: list.length,
  means: keys.map((k) => list.reduce((s, e) => s + (e[k] as number), 0) / list.length),
})).sort((a, b) => b.means[0] - a.means[0]);
console.log(`| kind | n | ${keys.join(" | ")} |`);
console.log(`| --- | --- | ${keys.map(() => "---").join(" | ")} |`);
for (const r of rows) {
  console.log(`| ${r.kind} | ${r.n} | ${r.means.map((m) => m.toFixed(3)).join(" | ")} |`);
}
