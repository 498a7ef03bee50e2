"""Procedural frontal chest radiographs ("phantoms") whose findings follow a 14-label vector.

A phantom is built like a radiograph: every structure adds attenuation (soft tissue, bone, fluid,
metal) or removes it (air in the lungs and trachea), and the film turns attenuation A into brightness
1 - exp(-mu * A). Air-filled lung is dark; a finding that fills alveoli with fluid removes air, so the
lung turns white exactly where the finding is; that is why opacities, effusions and an enlarged heart
all look right with one rule.

Speed comes from doing the expensive part once per image size. The anatomy of 48 "template patients"
(lung fields traced from real radiographs, ribs, clavicles, spine, vessels, ...) is drawn into an atlas
in a canonical frame; a phantom is one bilinear lookup of that atlas through a random pose (rotation,
shift, scale, body width), then findings, exposure and noise. Findings are smooth, so they are
computed on a coarse grid (half resolution, 32 to 64 px) and upsampled; the thin pleural line of a
pneumothorax and the tubes and lines are drawn at full resolution. Batches are rendered in chunks of
about 8 MB per tensor, which keeps memory reused and makes rendering several times faster.

The modules, in the order they build a phantom: `drawing` (the canonical frame and drawing helpers),
`masks` (the real lung masks), `anatomy` (the template atlas), `findings` (one drawing per finding),
`render` (pose, lookup, findings, exposure, noise).
"""
from .findings import FINDINGS
from .render import render, render_finding_pairs

__all__ = ["FINDINGS", "render", "render_finding_pairs"]
