// A second user plugin that takes the name of the first (user/offset): it must be refused.
import { definePlugin } from "../../mod.ts";

export default definePlugin({
  name: "user/offset",
  kind: "reward",
  version: "0.1.0",
  description: "Another file with the same plugin name as user_offset.ts",
  params: {},
  create: () => ({ offset: 1 }),
});
