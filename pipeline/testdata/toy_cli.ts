// The command line with the toy plugins, for tests that need a separate process
// (kill -9, runs at the same time).
import { main } from "../cli.ts";
import { toyRegistry } from "./toy_plugins.ts";

Deno.exit(await main(Deno.args, toyRegistry));
