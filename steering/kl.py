"""KL(unsteered || steered) of next-token distributions, computed from final
hidden states without keeping the unsteered distributions.

For a position with unsteered distribution p, steered final hidden state h
and output layer z = W h + b:

    KL(p || softmax(z)) = sum_v p_v log p_v - sum_v p_v z_v + logsumexp(z)
    sum_v p_v z_v       = (W^T p) . h + p . b

so a reference keeps per position u = W^T p and the scalar
c = sum p log p - p . b, and a steered pass needs only its own logits'
logsumexp: KL = c - u . h + logsumexp(z). (Keeping p itself would take
vocabulary x positions floats: 0.8 GB for SmolLM2 on the neutral set.)
Used by the KL guard (optimize/guard/kl.py) and the Explore map
(steering/explore_map.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Positions whose logits are computed at once (bounds memory: 256 x vocabulary floats).
HEAD_CHUNK = 256


@dataclass(frozen=True)
class KlReference:
    """The unsteered model at some scored positions, kept as small as a hidden
    state per position (see the module docstring). Built once with `of`;
    `kl` then measures steered final states at the same positions. The
    Explore tab's layer x strength map uses it too, on its own batches."""

    hidden: torch.Tensor  # [P, H] final (normed) hidden state, model dtype
    u: torch.Tensor  # [P, H] float32: W^T p
    c: torch.Tensor  # [P] float32: sum p log p - p . b

    @classmethod
    def of(
        cls, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> KlReference:
        """The reference for unsteered final states `hidden` ([P, H]) and the
        output layer z = weight @ h + bias (float32)."""
        us, cs = [], []
        with torch.no_grad():
            for chunk in hidden.split(HEAD_CHUNK):
                logp = F.log_softmax(F.linear(chunk.float(), weight, bias), dim=-1)
                p = logp.exp()
                c = (p * logp).sum(-1)
                if bias is not None:
                    c = c - p @ bias
                us.append(p @ weight)
                cs.append(c)
        return cls(hidden=hidden, u=torch.cat(us), c=torch.cat(cs))

    def kl(
        self, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """KL per position of steered final states `hidden` ([P, H], the
        reference's positions in order): >= 0, exactly 0 where the final state
        did not move."""
        parts = []
        with torch.no_grad():
            for start in range(0, hidden.shape[0], HEAD_CHUNK):
                h = hidden[start : start + HEAD_CHUNK]
                lse = torch.logsumexp(F.linear(h.float(), weight, bias), dim=-1)
                kl = self.c[start : start + HEAD_CHUNK] + lse
                kl = kl - (self.u[start : start + HEAD_CHUNK] * h.float()).sum(-1)
                same = (h == self.hidden[start : start + HEAD_CHUNK]).all(-1)
                parts.append(torch.where(same, torch.zeros_like(kl), kl.clamp_min(0.0)))
        return torch.cat(parts)
