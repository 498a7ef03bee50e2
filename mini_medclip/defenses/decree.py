"""DECREE (Feng et al., CVPR 2023): is there a small patch that makes every image look the same to an encoder?

A backdoored encoder maps any triggered image near one point (BadMatch: the "No Finding" texts). DECREE
inverts such a trigger without labels or training data: it optimises a mask m and a pattern p so that
x' = (1 - m) x + m p collapses the embeddings of clean images, while an L1 penalty keeps the mask small.
If a tiny mask suffices, the encoder has a shortcut: suspicious. A clean encoder needs to overwrite a large
part of the image to make all images alike.

Adapted to grey-scale radiographs: the mask and the pattern have one channel, both are sigmoid-
parameterised, and the mask's size is its PL1 norm, L1(m) / (H * W), in (0, 1]: the share of the image
the trigger overwrites. The L1 weight adapts as in the reference code (x5 after a run of collapsed steps,
/5 after a run of failures); the smallest mask that reached a collapse is kept.

"Collapse" is relative here, where the reference code uses an absolute mean cosine (0.99): the triggered
images' mean cosine distance (1 - cos) must fall to `collapse_residual` times the clean images'. An
untrained or weakly trained encoder already maps all images close together (mean cosine 0.98 for the
untrained tiny ResNet), and an absolute threshold would then "find" an empty trigger in a clean model.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager

import torch
from scipy.stats import t as student_t

from ..embeddings import mean_pairwise_cosine
from .base import ModelScanner, ScanResult, register_defense


@contextmanager
def frozen(model: torch.nn.Module):
    """Eval mode and no parameter gradients (only the trigger is optimised); both restored afterwards."""
    was_training = model.training
    requires_grad = [p.requires_grad for p in model.parameters()]
    model.eval().requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), requires_grad):
            p.requires_grad_(flag)
        model.train(was_training)


@register_defense("decree")
class DECREE(ModelScanner):
    """Inverts the smallest collapsing trigger; anomaly score = -ln(PL1), so a smaller trigger scores higher.

    The log makes the score track orders of magnitude: a 4 x 4 patch on 64 x 64 is PL1 = 0.004 (score 5.5);
    chapter 8 measures what the clean and the backdoored encoders need. Cost: at most `steps`
    forward+backward passes on `batch_size` images; the run stops earlier at a collapsed step once the
    smallest collapsing mask has not shrunk for `stop_patience` steps. If no step collapses, the final mask's norm is reported with
    `details["collapsed"] = False`: no trigger was found within the budget.
    """

    CLEAN_REFERENCE_IMAGES = 256  # images whose untriggered mean cosine sets the collapse target

    def __init__(
        self, steps: int = 300, batch_size: int = 32, lr: float = 0.1, collapse_residual: float = 0.05,
        l1_weight: float = 0.1, min_l1_weight: float = 1e-4, patience: int = 5, stop_patience: int = 50,
        seed: int = 0,
    ):
        counts = {"steps": steps, "batch_size": batch_size, "patience": patience, "stop_patience": stop_patience}
        for what, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"invalid {what} {value!r}; expected a positive integer")
        if batch_size < 2:
            raise ValueError(f"invalid batch_size {batch_size}; expected at least 2 images to compare")
        if not 0 < collapse_residual < 1:
            raise ValueError(
                f"invalid collapse_residual {collapse_residual!r}; expected a share of the clean cosine distance in (0, 1)"
            )
        self.steps, self.batch_size, self.lr, self.collapse_residual = steps, batch_size, lr, collapse_residual
        self.l1_weight, self.min_l1_weight, self.seed = l1_weight, min_l1_weight, seed
        self.patience, self.stop_patience = patience, stop_patience

    def scan(self, model: torch.nn.Module, clean_images: torch.Tensor) -> ScanResult:
        """Scan a `MedCLIP` (through `encode_image`) or a bare encoder (its forward), with clean (N, 1, H, W) images."""
        if not isinstance(clean_images, torch.Tensor) or clean_images.ndim != 4 or clean_images.shape[1] != 1:
            shape = tuple(clean_images.shape) if isinstance(clean_images, torch.Tensor) else type(clean_images).__name__
            raise ValueError(f"clean_images have shape {shape}; expected (N, 1, H, W) with N >= 2")
        if len(clean_images) < 2:
            raise ValueError(f"{len(clean_images)} clean image(s); expected at least 2 to measure a collapse")
        started = time.perf_counter()
        encode = model.encode_image if hasattr(model, "encode_image") else model
        device = next(model.parameters()).device
        images = clean_images.float().to(device)
        generator = torch.Generator().manual_seed(self.seed)
        size = (1, 1, *images.shape[-2:])
        # Start from a random mask and pattern, as DECREE's "rand" init; logits of uniform draws.
        mask_logits = torch.logit(torch.rand(size, generator=generator).clamp(0.05, 0.95)).to(device).requires_grad_()
        pattern_logits = torch.logit(torch.rand(size, generator=generator).clamp(0.05, 0.95)).to(device).requires_grad_()
        optimizer = torch.optim.Adam([mask_logits, pattern_logits], lr=self.lr, betas=(0.5, 0.9))
        l1_weight, above, below = self.l1_weight, 0, 0
        best_norm, best_mask, best_pattern, since_best = math.inf, None, None, 0
        step, cosine = 0, torch.tensor(0.0)
        with frozen(model):
            with torch.no_grad():
                clean_cosine = mean_pairwise_cosine(encode(images[: self.CLEAN_REFERENCE_IMAGES]).float()).item()
            target_cosine = 1 - self.collapse_residual * (1 - clean_cosine)
            while step < self.steps:
                batch = images[torch.randperm(len(images), generator=generator)[: self.batch_size].to(device)]
                mask, pattern = mask_logits.sigmoid(), pattern_logits.sigmoid()
                cosine = mean_pairwise_cosine(encode((1 - mask) * batch + mask * pattern).float())
                norm = mask.mean()
                loss = -cosine + l1_weight * norm
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                since_best += 1
                collapsed_now = cosine.item() >= target_cosine
                if collapsed_now:
                    above, below = above + 1, 0
                    if norm.item() < best_norm:
                        best_norm, since_best = norm.item(), 0
                        best_mask, best_pattern = mask.detach().cpu()[0, 0], pattern.detach().cpu()[0, 0]
                else:
                    above, below = 0, below + 1
                if above > self.patience:  # collapsing easily: push harder on the mask size
                    l1_weight, above = l1_weight * 5, 0
                elif below > self.patience:  # failing to collapse: relax the size penalty
                    l1_weight, below = max(self.min_l1_weight, l1_weight / 5), 0
                if collapsed_now and since_best >= self.stop_patience:
                    break
        collapsed = best_mask is not None
        if not collapsed:
            best_mask, best_pattern = mask_logits.detach().sigmoid().cpu()[0, 0], pattern_logits.detach().sigmoid().cpu()[0, 0]
            best_norm = best_mask.mean().item()
        details = {
            "pl1_norm": best_norm, "collapsed": collapsed, "clean_cosine": clean_cosine, "target_cosine": target_cosine,
            "last_cosine": cosine.item(), "steps": step,
            "l1_weight": l1_weight, "seconds": time.perf_counter() - started, "mask": best_mask, "pattern": best_pattern,
        }
        return ScanResult(score=-math.log(best_norm), details=details)


def decision_threshold(clean_norms, false_alarm_rate: float = 0.05) -> float:
    """A PL1 cut from the norms of several clean encoders: flag an encoder whose PL1 is below it.

    The one-sided lower prediction bound for one more clean encoder, on the log scale (norms are positive
    and differ by orders of magnitude): if ln PL1 is normal across clean encoders, a fresh clean encoder
    falls below the cut with probability `false_alarm_rate`. Student's t with n - 1 degrees of freedom
    accounts for a mean and spread estimated from the 3-5 clean encoders a course can afford; a fixed
    "mean - 2 std" would flag about one clean encoder in nine when the spread comes from three.
    """
    if not 0 < false_alarm_rate < 0.5:
        raise ValueError(f"false_alarm_rate {false_alarm_rate!r} must lie in (0, 0.5): the share of clean encoders flagged")
    norms = torch.as_tensor(clean_norms, dtype=torch.float64).flatten()
    if len(norms) < 2:
        raise ValueError(f"{len(norms)} clean norm(s); expected at least 2 clean encoders to set a threshold")
    if not ((norms > 0) & (norms <= 1)).all():
        raise ValueError(f"clean norms {norms.tolist()} must be PL1 norms in (0, 1]")
    logs, n = norms.log(), len(norms)
    width = student_t.ppf(1 - false_alarm_rate, df=n - 1) * logs.std().item() * math.sqrt(1 + 1 / n)
    return math.exp(logs.mean().item() - width)


__all__ = ["DECREE", "decision_threshold", "frozen", "mean_pairwise_cosine"]
