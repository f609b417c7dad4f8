/**
 * The command line: `deno task pipeline [command] [options]`.
 *
 * Exit status: 0 success, 2 nothing ran (invalid config, graph or arguments,
 * missing data, an input with no cached result: a run that cannot start),
 * 1 a stage failed, 130 interrupted.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { basename, relative, resolve } from "node:path";
import { type Graph, GraphError, loadGraph, type Registry, toMermaid } from "./graph.ts";
import { graphJsonSchema } from "./jsonschema.ts";
import { isStagePlugin } from "./plugin.ts";
import { formatStages, PlanError, type RunOptions, runPipeline } from "./run.ts";
import { collectGarbage, linkLatest } from "./runs.ts";
import { dropToReadOnly, sandboxFlags, type SandboxPlan, sandboxPlan } from "./sandbox.ts";
import { describeSpec, type ParamsSchema } from "./schema.ts";
import { formatIssue } from "./yaml.ts";

const USAGE = `Usage: deno task pipeline [COMMAND] [OPTIONS]

Commands:
  run        Run the graph (default)
  plan       Validate the graph and print which stages would run or come from cache
  graph      Print the graph as a Mermaid flowchart
  plugins    List every built-in plugin with its kind, ports and params
  schema     Print the JSON Schema of graph files (for editors)
  gc         Remove old runs, cache entries no kept run uses, work folders nothing will
             resume and leftovers of killed runs (--keep N, --dry-run to list only)

Options:
  --config FILE     Graph file (default: configs/pipeline.yaml)
  --set PATH=VALUE  Override a value, e.g. --set stages.pretrain.with.epochs=1 (repeatable)
  --dry-run         Same as the plan command
  --force           Ignore the cache: re-run every selected stage
  --only STAGE      Run only STAGE (its inputs must be cached)
  --from STAGE      Re-run STAGE; the stages after it re-run where their inputs changed
                    (add --force to re-run them all, e.g. after changing plugin code)
  --until STAGE     Run STAGE and what it needs, nothing after it
  --runs-dir DIR    Where run directories and the cache go (default: runs)
  --keep N          gc: runs kept per graph, newest first (default 10; the latest and
                    running ones are always kept)
  --json            plugins: print JSON instead of text
  --markdown        plugins: print the Markdown reference used in the README
  --no-sandbox      run: give plugins every permission of the task instead of only
                    what the graph needs (see the README before using it)
  --quiet           Print only warnings and errors
  --verbose         Also print details: the tensor backends tried and skipped, and why
  -h, --help`;

/** The options of every command (`parseArgs` form). */
const OPTIONS = {
  config: { type: "string" },
  set: { type: "string", multiple: true },
  "dry-run": { type: "boolean" },
  force: { type: "boolean" },
  only: { type: "string" },
  from: { type: "string" },
  until: { type: "string" },
  "runs-dir": { type: "string" },
  keep: { type: "string" },
  json: { type: "boolean" },
  markdown: { type: "boolean" },
  quiet: { type: "boolean" },
  verbose: { type: "boolean" },
  "no-sandbox": { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** Default graph: `configs/pipeline.yaml` in the working directory, else the one shipped here. */
function defaultConfig(): string {
  try {
    Deno.statSync("configs/pipeline.yaml");
    return "configs/pipeline.yaml";
  } catch {
    const shipped = fileURLToPath(new URL("../configs/pipeline.yaml", import.meta.url));
    return relative(Deno.cwd(), shipped) || shipped;
  }
}

/** One plugin's declaration as plain data, for listings. */
interface PluginRow {
  name: string;
  kind: string;
  version: string;
  description: string;
  role: "stage" | "component";
  inputs?: Record<string, string>;
  outputs?: Record<string, string>;
  params: { name: string; type: string; default: unknown; description: string }[];
}

/** Reads every built-in plugin's declaration (nothing runs). */
export async function pluginRows(registry: Registry): Promise<PluginRow[]> {
  const rows: PluginRow[] = [];
  for (const name of registry.names()) {
    const plugin = (await registry.load(name))!;
    const params = Object.entries(plugin.params as ParamsSchema).map(([key, spec]) => ({
      name: key,
      type: describeSpec(spec),
      default: "default" in spec ? spec.default : undefined,
      description: spec.description,
    }));
    const ports = (specs: Record<string, { type: string; optional?: boolean }>) =>
      Object.fromEntries(
        Object.entries(specs).map(([k, v]) => [k, `${v.type}${v.optional ? " (optional)" : ""}`]),
      );
    rows.push({
      name: plugin.name,
      kind: plugin.kind,
      version: plugin.version,
      description: plugin.description,
      role: isStagePlugin(plugin) ? "stage" : "component",
      inputs: isStagePlugin(plugin) ? ports(plugin.inputs) : undefined,
      outputs: isStagePlugin(plugin) ? ports(plugin.outputs) : undefined,
      params,
    });
  }
  return rows;
}

const showDefault = (value: unknown): string =>
  value === undefined ? "required" : JSON.stringify(value);

/** The plugin reference as Markdown (the README's "Built-in plugins" section is this text). */
export function pluginsMarkdown(rows: PluginRow[]): string {
  const out: string[] = [];
  for (const row of rows) {
    out.push(`#### \`${row.name}\` (${row.kind} ${row.role})`, "", row.description, "");
    if (row.inputs) {
      const list = (ports: Record<string, string>) =>
        Object.entries(ports).map(([k, v]) => `\`${k}\`: ${v}`).join(", ") || "none";
      out.push(`Inputs: ${list(row.inputs)}. Outputs: ${list(row.outputs!)}.`, "");
    }
    if (row.params.length > 0) {
      out.push("| param | type | default | description |", "| --- | --- | --- | --- |");
      for (const p of row.params) {
        const cell = (text: string) => text.replaceAll("|", "\\|");
        out.push(
          `| \`${p.name}\` | ${cell(p.type)} | \`${cell(showDefault(p.default))}\` | ${
            cell(p.description)
          } |`,
        );
      }
      out.push("");
    }
  }
  return out.join("\n").trimEnd() + "\n";
}

/** Prints `plugins` output: every plugin's kind, ports and params, from its declaration. */
async function listPlugins(
  registry: Registry,
  format: "text" | "json" | "markdown",
): Promise<void> {
  const rows = await pluginRows(registry);
  if (format === "json") {
    console.log(JSON.stringify(rows, null, 2));
    return;
  }
  if (format === "markdown") {
    console.log(pluginsMarkdown(rows));
    return;
  }
  for (const row of rows) {
    console.log(`${row.name}  [${row.kind} ${row.role}, v${row.version}]`);
    console.log(`  ${row.description}`);
    if (row.inputs) {
      const ports = Object.entries(row.inputs).map(([k, v]) => `${k}: ${v}`).join(", ");
      console.log(`  inputs:  ${ports || "none"}`);
      console.log(
        `  outputs: ${Object.entries(row.outputs!).map(([k, v]) => `${k}: ${v}`).join(", ")}`,
      );
    }
    for (const param of row.params) {
      console.log(
        `  - ${param.name} (${param.type}; default ${
          showDefault(param.default)
        }): ${param.description}`,
      );
    }
    console.log("");
  }
}

/** The `gc` command: collects garbage in a runs folder and lists what went (or would go). */
async function garbageCollect(
  runsDir: string,
  options: { keep: number; dryRun: boolean },
): Promise<void> {
  const report = await collectGarbage(runsDir, options);
  for (const dir of report.interrupted) console.log(`marked interrupted  ${dir}`);
  const rows: [string, string[]][] = [
    ["run", report.runs],
    ["cache entry", report.entries],
    ["work folder", report.work],
    ["leftover", report.leftovers],
    ["lock", report.locks],
  ];
  const verb = options.dryRun ? "would remove" : "removed";
  for (const [what, paths] of rows) {
    for (const path of paths) console.log(`${verb}  ${what.padEnd(11)}  ${path}`);
  }
  const count = rows.reduce((n, [, paths]) => n + paths.length, 0);
  const mib = (report.bytes / 2 ** 20).toFixed(1);
  console.log(
    options.dryRun
      ? `Dry run: ${count} item(s), ${mib} MiB would be freed in "${runsDir}"; nothing was removed`
      : `Removed ${count} item(s), ${mib} MiB freed in "${runsDir}"`,
  );
}

/** Loads a graph, or prints every problem in it and returns undefined. */
async function loadOrReport(
  config: string,
  overrides: string[],
  registry: Registry,
): Promise<Graph | undefined> {
  try {
    return await loadGraph(config, { registry, overrides });
  } catch (error) {
    if (error instanceof GraphError) {
      for (const issue of error.issues) console.error(formatIssue(issue));
      console.error(`\n${error.issues.length} problem(s) in "${config}": nothing was run`);
      return undefined;
    }
    throw error;
  }
}

/**
 * Runs the CLI.
 *
 * @param args Command-line arguments (without the program name).
 * @param registry The built-in plugins.
 * @returns The process exit status.
 */
export async function main(
  args: string[],
  registry: Registry,
  options: { linkLatest?: RunOptions["linkLatest"] } = {},
): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, allowPositionals: true, options: OPTIONS });
  } catch (error) {
    console.error(`error: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const command = positionals[0] ?? "run";
  const commands = ["run", "plan", "graph", "plugins", "schema", "gc"];
  if (positionals.length > 1 || !commands.includes(command)) {
    console.error(`error: unknown command "${positionals.join(" ")}"\n\n${USAGE}`);
    return 2;
  }
  if (command === "plugins") {
    await listPlugins(registry, values.json ? "json" : values.markdown ? "markdown" : "text");
    return 0;
  }
  if (command === "schema") {
    console.log(JSON.stringify(await graphJsonSchema(registry), null, 2));
    return 0;
  }
  if (command === "gc") {
    const keep = Number(values.keep ?? 10);
    if (!Number.isInteger(keep) || keep < 0) {
      console.error(`error: --keep expects an integer >= 0, received "${values.keep}"\n\n${USAGE}`);
      return 2;
    }
    await garbageCollect(values["runs-dir"] ?? "runs", {
      keep,
      dryRun: values["dry-run"] ?? false,
    });
    return 0;
  }

  const config = values.config ?? defaultConfig();
  const graph = await loadOrReport(config, values.set ?? [], registry);
  if (!graph) return 2;
  if (command === "graph") {
    console.log(toMermaid(graph));
    return 0;
  }

  const controller = new AbortController();
  let interrupts = 0;
  const onInterrupt = () => {
    interrupts++;
    if (interrupts === 1) {
      console.error("\nStopping after the current step (Ctrl-C again to stop at once)...");
      controller.abort();
    } else {
      Deno.exit(130);
    }
  };
  Deno.addSignalListener("SIGINT", onInterrupt);
  try {
    const dryRun = command === "plan" || (values["dry-run"] ?? false);
    let result;
    try {
      result = await runPipeline(graph, {
        runsDir: values["runs-dir"] ?? "runs",
        force: values.force,
        only: values.only,
        from: values.from,
        until: values.until,
        dryRun,
        signal: controller.signal,
        quiet: values.quiet,
        verbose: values.verbose,
        linkLatest: options.linkLatest,
      });
    } catch (error) {
      console.error(`error: ${(error as Error).message}`);
      return 2;
    }
    if (result.status === "failed" && result.runDir === undefined) {
      // Found while planning (missing data, an input with no cached result): nothing ran, so
      // the problem alone is the answer, with no table of stages that never started.
      for (const line of result.error!.message.split("\n")) console.error(`error: ${line}`);
      return 2;
    }
    const heading = dryRun
      ? `Plan for "${graph.name}" (${graph.file}):`
      : `Run "${graph.name}": ${result.status}`;
    console.log(`${heading}\n${formatStages(graph, result)}`);
    if (result.backend) console.log(`backend: ${result.backend.name} (${result.backend.detail})`);
    if (result.runDir) console.log(`run directory: ${result.runDir}`);
    if (result.status === "failed") {
      console.error(`error: ${result.error?.message}`);
      // A run that could not start ran nothing: that is a problem with the arguments.
      return result.error instanceof PlanError ? 2 : 1;
    }
    if (result.status === "interrupted") return 130;
    return 0;
  } finally {
    Deno.removeSignalListener("SIGINT", onInterrupt);
  }
}

// ------------------------------------------------------------------ sandbox

/** Set in the child processes of a sandboxed run: "plan" or "run". */
const SANDBOX_ENV = "HARMONYRL_SANDBOX";
/** Where a sandboxed run asks its parent to point `latest` at it. */
const LATEST_ENV = "HARMONYRL_LATEST_REQUEST";
const PROJECT_ROOT = fileURLToPath(new URL("..", import.meta.url));

function envOf(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/**
 * The program's entry: the commands of {@linkcode main}, each with the least
 * privilege it needs (see `sandbox.ts`). Commands that only look drop every
 * permission but reading before a plugin loads; `run` validates the graph in
 * a read-only child process, then runs it in a child process that may touch
 * only what the graph needs. `--no-sandbox` runs it here, with the task's
 * permissions.
 *
 * The core imports no plugin: the program's entry module (`main.ts`) passes
 * the built-in registry in, and the child processes run that same module
 * again, so that they find the same plugins.
 *
 * @param args Command-line arguments.
 * @param registry The built-in plugins.
 * @param entry The module the child processes run, which calls this function
 *   with the same registry (`main.ts` passes its own `import.meta.url`).
 * @returns The exit status.
 */
export async function sandboxedMain(
  args: string[],
  registry: Registry,
  entry: string,
): Promise<number> {
  const mode = envOf(SANDBOX_ENV);
  if (mode === "plan") return await planChild(args, registry);
  if (mode === "run") {
    exitWhenParentDies();
    const request = envOf(LATEST_ENV);
    return await main(args, registry, {
      linkLatest: request
        ? (graphDir, runId) =>
          Deno.writeTextFile(request, JSON.stringify({ graph: basename(graphDir), runId }))
        : undefined,
    });
  }
  let values;
  let command;
  try {
    const parsed = parseArgs({ args, allowPositionals: true, options: OPTIONS });
    values = parsed.values;
    command = parsed.positionals[0] ?? "run";
  } catch {
    return await main(args, registry); // prints the usage error
  }
  if (values["no-sandbox"]) {
    console.error(
      "warning: --no-sandbox: plugins run with every permission of the task (read, write and run anywhere)",
    );
    return await main(args, registry);
  }
  if (values.help || command === "gc") return await main(args, registry);
  if (command !== "run" || values["dry-run"]) {
    await dropToReadOnly();
    return await main(args, registry);
  }
  return await sandboxedRun(args, { runsDir: values["runs-dir"] ?? "runs", registry, entry });
}

/**
 * The run child's stdin is a pipe that its parent holds open and never writes
 * to. When the parent dies, even by SIGKILL, which it cannot catch, the pipe
 * closes and this process stops at once instead of running on unseen (a
 * killed run must leave its stage unfinished, to be resumed).
 */
function exitWhenParentDies(): void {
  (async () => {
    try {
      for await (const _ of Deno.stdin.readable) { /* the parent never writes */ }
    } catch { /* a closed pipe ends the loop like EOF */ }
    Deno.exit(137);
  })();
}

/** The planning child: validates the graph and prints what running it needs. */
async function planChild(args: string[], registry: Registry): Promise<number> {
  // The nonce comes first, before any plugin's code runs, so that no plugin can forge the plan.
  const nonce = new TextDecoder().decode(await new Response(Deno.stdin.readable).arrayBuffer())
    .trim();
  const { values } = parseArgs({ args, allowPositionals: true, options: OPTIONS });
  const graph = await loadOrReport(values.config ?? defaultConfig(), values.set ?? [], registry);
  if (!graph) return 2;
  const plan = sandboxPlan(graph, {
    runsDir: values["runs-dir"] ?? "runs",
    projectRoot: PROJECT_ROOT,
  });
  console.log(`${nonce} ${JSON.stringify(plan)}`);
  return 0;
}

/** Runs `deno run` on the entry module in a child process; the exit status, 128 + n for a signal. */
async function child(
  flags: string[],
  args: string[],
  options: {
    /** The entry module (a file URL or path) that calls {@linkcode sandboxedMain}. */
    entry: string;
    env: Record<string, string>;
    stdin?: string;
    captureStdout?: boolean;
    /** Hold the child's stdin open (and silent) until it ends: it exits when this process dies. */
    lifeline?: boolean;
  },
): Promise<{ code: number; stdout: string }> {
  const command = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...flags,
      "--config",
      `${PROJECT_ROOT}deno.json`,
      entryFile(options.entry),
      ...args,
    ],
    env: options.env,
    stdin: options.stdin !== undefined || options.lifeline ? "piped" : "null",
    stdout: options.captureStdout ? "piped" : "inherit",
    stderr: "inherit",
  });
  const process = command.spawn();
  if (options.stdin !== undefined) {
    const writer = process.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const output = options.captureStdout
    ? await process.output()
    : { ...(await process.status), stdout: new Uint8Array() };
  const signal = output.signal
    ? Deno.build.os === "windows" ? 1 : 128 + signalNumber(output.signal)
    : 0;
  return {
    code: output.signal ? signal : output.code,
    stdout: new TextDecoder().decode(output.stdout),
  };
}

function signalNumber(signal: Deno.Signal): number {
  return ({ SIGINT: 2, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[signal] ?? 1;
}

/**
 * A private `XDG_RUNTIME_DIR` for the children when the session has none (containers, CI):
 * native libraries that plugins load (Mesa's Vulkan drivers, for one) complain on every call
 * without it, and a sandboxed child may not make a folder of its own outside the run.
 */
function privateRuntimeDir(): string | undefined {
  if (Deno.build.os !== "linux" || Deno.env.get("XDG_RUNTIME_DIR")) return undefined;
  return Deno.makeTempDirSync({ prefix: "harmonyrl-xdg-" });
}

function entryFile(entry: string): string {
  return entry.startsWith("file:") ? fileURLToPath(entry) : entry;
}

/** How a sandboxed run starts its children. */
interface SandboxedRunOptions {
  runsDir: string;
  registry: Registry;
  entry: string;
}

/** `run` in the sandbox: plan in a read-only child, then run in a child with only what it needs. */
async function sandboxedRun(args: string[], options: SandboxedRunOptions): Promise<number> {
  const runtimeDir = privateRuntimeDir();
  try {
    return await sandboxedRunWith(args, options, runtimeDir ? { XDG_RUNTIME_DIR: runtimeDir } : {});
  } finally {
    if (runtimeDir) await Deno.remove(runtimeDir, { recursive: true }).catch(() => {});
  }
}

async function sandboxedRunWith(
  args: string[],
  { runsDir, registry, entry }: SandboxedRunOptions,
  extraEnv: Record<string, string>,
): Promise<number> {
  const nonce = crypto.randomUUID();
  const env = [SANDBOX_ENV, ...registry.planEnv ?? [], "LOG_TOKENS", "LOG_STREAM", "PATH"].join(
    ",",
  );
  const planned = await child(["--no-prompt", "--allow-read", `--allow-env=${env}`], args, {
    entry,
    env: { ...extraEnv, [SANDBOX_ENV]: "plan" },
    stdin: nonce,
    captureStdout: true,
  });
  const line = planned.stdout.split("\n").find((l) => l.startsWith(`${nonce} `));
  if (planned.code !== 0 || line === undefined) {
    // The planner printed the problems (an invalid graph exits 2).
    return planned.code !== 0 ? planned.code : 1;
  }
  const plan = JSON.parse(line.slice(nonce.length + 1)) as SandboxPlan;
  const request = resolve(runsDir, `.latest-request-${nonce}`);
  plan.env.push(SANDBOX_ENV, LATEST_ENV);
  let flags: string[];
  try {
    flags = sandboxFlags(plan);
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    return 2;
  }
  // Ctrl-C reaches the child too; this process waits for it to stop.
  const ignore = () => {};
  Deno.addSignalListener("SIGINT", ignore);
  let done = false;
  const watcher = watchLatestRequest(request, runsDir, () => done);
  try {
    const result = await child(flags, args, {
      entry,
      env: { ...extraEnv, [SANDBOX_ENV]: "run", [LATEST_ENV]: request },
      lifeline: true,
    });
    return result.code;
  } finally {
    done = true;
    await watcher;
    await Deno.remove(request).catch(() => {});
    Deno.removeSignalListener("SIGINT", ignore);
  }
}

/**
 * Makes the `latest` link the sandboxed run asks for (it may not make links
 * itself), checking that the request names a graph folder of the runs folder
 * and a run in it.
 */
async function watchLatestRequest(
  request: string,
  runsDir: string,
  finished: () => boolean,
): Promise<void> {
  while (true) {
    const last = finished();
    const text = await Deno.readTextFile(request).catch(() => undefined);
    if (text !== undefined) {
      try {
        const { graph, runId } = JSON.parse(text);
        const name = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
        if (name.test(graph) && name.test(runId) && !graph.includes("..")) {
          const graphDir = resolve(runsDir, graph);
          if ((await Deno.stat(resolve(graphDir, runId))).isDirectory) {
            await linkLatest(graphDir, runId);
          }
        }
      } catch {
        // a half-written request: read it again next time
        if (!last) {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
      }
      await Deno.remove(request).catch(() => {});
      return;
    }
    if (last) return;
    await new Promise((r) => setTimeout(r, 200));
  }
}
