/**
 * Shared by the checkpoint loaders: reads an artifact directory with its codec
 * and turns failures into errors that name the path.
 *
 * @module
 */

import type { ArtifactCodec, StageContext } from "../../mod.ts";

/**
 * Loads a stored artifact.
 *
 * @param ctx The stage's context (for the log line).
 * @param path The artifact's directory.
 * @param codec How it was stored.
 * @param what What it is, for messages ("model checkpoint").
 * @returns The artifact.
 * @throws {Error} `Cannot load <what> "<path>": <reason>`.
 */
export async function loadStoredArtifact<T>(
  ctx: StageContext,
  path: string,
  codec: ArtifactCodec<T>,
  what: string,
): Promise<T> {
  const problem = await checkArtifactDir(path, what);
  if (problem !== undefined) throw new Error(problem);
  try {
    const value = await codec.load(path, ctx);
    ctx.log.info(`Loaded ${what} from "${path}"`);
    return value;
  } catch (error) {
    throw new Error(`Cannot load ${what} "${path}": ${(error as Error).message}`);
  }
}

/**
 * Checks that an artifact directory is there, for the error before anything runs.
 *
 * @param path The artifact's directory.
 * @param what What it is, for messages ("model checkpoint").
 * @returns `Cannot load <what> "<path>": <reason>`, or undefined when it is a directory.
 */
export async function checkArtifactDir(path: string, what: string): Promise<string | undefined> {
  try {
    const info = await Deno.stat(path);
    if (!info.isDirectory) return `Cannot load ${what} "${path}": not a directory`;
    return undefined;
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound
      ? "no such directory"
      : (error as Error).message;
    return `Cannot load ${what} "${path}": ${reason}`;
  }
}
