// A user's plugin loaded by path, exactly as a user would write it.
import { definePlugin, p } from "../../mod.ts";

export default definePlugin({
  name: "user/offset",
  kind: "reward",
  version: "0.1.0",
  description: "A user's component: an offset of 1000 times a factor",
  params: { factor: p.number({ default: 1, description: "Multiplier" }) },
  create: (params) => ({ offset: 1000 * params.factor }),
});
