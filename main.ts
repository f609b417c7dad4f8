/**
 * The program: `deno task pipeline [command] [options]` runs this file. It is
 * the composition root, the one place that joins the core (`pipeline/`, which
 * imports no plugin) to the built-in plugins (`plugins/registry.ts`). The
 * sandboxed child processes of a run start from this file too, so they find
 * the same plugins.
 *
 * @module
 */

import { sandboxedMain } from "./pipeline/cli.ts";
import { registry } from "./plugins/registry.ts";

if (import.meta.main) {
  Deno.exit(await sandboxedMain(Deno.args, registry, import.meta.url));
}
