/**
 * The order stages run in: each after its dependencies, ties in file order
 * (deterministic, as Kedro's), and the stages of a cycle when there is one.
 *
 * @module
 */

import type { StageNode } from "./graph.ts";

/**
 * Orders stages so each runs after its dependencies; ties keep file order.
 *
 * @param nodes The stages, with their dependencies (`deps`) and file order (`index`).
 * @param onCycle Called with the stages of one cycle when the rest cannot be ordered.
 * @returns The stages in order: all of them, or those before a cycle when there is one.
 */
export function orderStages(
  nodes: StageNode[],
  onCycle: (cycle: string[]) => void,
): StageNode[] {
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const done = new Set<string>();
  const ordered: StageNode[] = [];
  while (ordered.length < nodes.length) {
    const ready = nodes.filter((n) =>
      !done.has(n.name) && n.deps.every((d) => done.has(d) || !byName.has(d))
    );
    if (ready.length === 0) {
      const cycle = findCycle(nodes.filter((n) => !done.has(n.name)), byName);
      onCycle(cycle);
      return ordered;
    }
    ready.sort((a, b) => a.index - b.index);
    done.add(ready[0].name);
    ordered.push(ready[0]);
  }
  return ordered;
}

/** Finds one cycle among stages that could not be ordered. */
function findCycle(nodes: StageNode[], byName: Map<string, StageNode>): string[] {
  const state = new Map<string, "visiting" | "done">();
  const stack: string[] = [];
  const visit = (name: string): string[] | undefined => {
    if (state.get(name) === "visiting") return stack.slice(stack.indexOf(name));
    if (state.get(name) === "done" || !byName.has(name)) return undefined;
    state.set(name, "visiting");
    stack.push(name);
    for (const dep of byName.get(name)!.deps) {
      const found = visit(dep);
      if (found) return found;
    }
    stack.pop();
    state.set(name, "done");
    return undefined;
  };
  for (const node of nodes) {
    const found = visit(node.name);
    if (found) return found.reverse();
  }
  return [nodes[0].name];
}
