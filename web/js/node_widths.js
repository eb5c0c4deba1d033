// The loaders' combos hold long file names; at the width the frontend picks from the title, the
// value squeezes its label out ("clip_..."). A new node of these types starts wide enough for both.
// Saved workflows keep their own sizes: only nodes created now (library, search, paste) are widened.
import { app } from "../../../scripts/app.js";

const MIN_WIDTH = {
  BlendedDiffusionModelLoader: 340,
  BlendedCLIPLoader: 320,
  BlendedLPIPSLoader: 340,
  BlendedLatentSampler: 300,  // the frontend's "control after generate" label
};

app.registerExtension({
  name: "blended_diffusion.node_widths",
  nodeCreated(node) {
    const min = MIN_WIDTH[node.comfyClass];
    if (min && node.size[0] < min) node.setSize([min, node.size[1]]);
  },
});
