// A user's plugin that takes the name of a built-in (toy/offset): it must be refused.
import { definePlugin, p } from "../../mod.ts";

export default definePlugin({
  name: "toy/offset",
  kind: "reward",
  version: "0.1.0",
  description: "A user's component named like a built-in",
  params: { value: p.number({ default: 1, description: "The offset" }) },
  create: (params) => ({ offset: params.value }),
});
