"""The order of an epoch's training images, drawn from the run's generator (so a checkpoint that
restores the generator replays it): a shuffle of every image once (data.sampler: shuffle), or a
class-balanced epoch (data.sampler: balanced) of the same length in which every class present is
drawn equally often, each class's images picked uniformly with replacement (a rare class's images
repeat, a common class's are sub-sampled differently every epoch)."""

from __future__ import annotations

from typing import Literal

import torch

Sampler = Literal["shuffle", "balanced"]


def epoch_order(n: int, labels: torch.Tensor | None, generator: torch.Generator | None,
                sampler: Sampler = "shuffle") -> torch.Tensor:
    """Indices of the epoch's images, in order, on the generator's device."""
    device = generator.device if generator is not None else torch.device("cpu")
    if sampler == "shuffle" or labels is None:
        return torch.randperm(n, generator=generator, device=device)
    labels = labels.to(device)
    classes = torch.unique(labels)
    k = len(classes)
    # n // k draws per class; the n % k left over go to classes drawn at random this epoch.
    per = torch.full((k,), n // k, dtype=torch.long, device=device)
    per[torch.randperm(k, generator=generator, device=device)[: n % k]] += 1
    picks = []
    for c, m in zip(classes.tolist(), per.tolist()):
        members = torch.nonzero(labels == c).flatten()
        picks.append(members[torch.randint(len(members), (m,), generator=generator, device=device)])
    out = torch.cat(picks)
    return out[torch.randperm(n, generator=generator, device=device)]
