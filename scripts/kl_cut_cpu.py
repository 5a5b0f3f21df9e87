"""CPU seconds of the KL guard's pass for one demo setting (layer 7, alpha
1.05 of the sentiment preset's concept), with the rows cut as before the
padding buckets (fixed counts filled to 1,024 tokens) and as now, in one
process, alternating, the least of `--repeat` calls each; and the largest
difference of the two KL values (the cut must not change them).

    OMP_NUM_THREADS=1 python scripts/kl_cut_cpu.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _old_cut(widths, batch_size, min_tokens, _batch_cost):
    """`group_rows`' signature over the cut before the padding buckets (work_accounting's)."""
    from scripts.work_accounting import _old_cut as old_cut

    return old_cut(widths, batch_size, min_tokens)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from optimize.guard import kl as guard_module
    from optimize.guard.kl import KlGuard
    from presets import load_preset
    from steering import capture_vector, steerer_for
    from steering.models import load_model

    loaded = load_model()
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    preset = load_preset("sentiment")
    vector = capture_vector(steerer, preset.concept, 7, 1.05, preset.contrast)
    now = KlGuard(steerer)
    with mock.patch.object(guard_module, "group_rows", _old_cut):
        before = KlGuard(steerer)
    guards = {"before": before, "now": now}
    seconds = {name: float("inf") for name in guards}
    values = {}
    for _ in range(args.repeat):
        for name, guard in guards.items():
            start = time.process_time()
            values[name] = guard.evaluate([vector]).kl
            seconds[name] = min(seconds[name], time.process_time() - start)
    for name, guard in guards.items():
        tokens = sum(int(b.ids.numel()) for b in guard._batches)
        print(f"{name}: {tokens} tokens, {len(guard._batches)} batches, "
              f"{seconds[name]:.2f} CPU s, KL {values[name]:.6f}")
    print(f"KL difference {abs(values['before'] - values['now']):.2e}; "
          f"CPU now / before {seconds['now'] / seconds['before']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
