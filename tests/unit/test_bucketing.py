"""Where length-sorted rows are cut into padded batches (steering.bucketing)."""

import itertools
import random

import pytest

from steering.bucketing import group_rows


def _cost(widths, groups, batch_cost):
    total, start = 0, 0
    for rows in groups:
        total += rows * widths[start] + batch_cost
        start += rows
    return total


def _allowed(widths, groups, batch_size, min_tokens):
    start = 0
    for rows in groups:
        left = len(widths) - start
        most = max(batch_size, min_tokens // widths[start])
        if not (min(batch_size, left) <= rows <= most):
            return False
        start += rows
    return start == len(widths)


def _compositions(count):
    """Every way to write `count` as an ordered sum of positive parts."""
    for cuts in itertools.product((False, True), repeat=count - 1):
        groups, rows = [], 1
        for cut in cuts:
            if cut:
                groups.append(rows)
                rows = 1
            else:
                rows += 1
        yield groups + [rows]


def test_without_a_token_fill_every_batch_holds_the_batch_size():
    widths = [30, 29, 20, 12, 12, 11, 5, 4, 3, 3, 2]
    assert group_rows(widths, 3, 0, 40) == [3, 3, 3, 2]
    assert group_rows(widths, 1, 0, 0) == [1] * len(widths)


@pytest.mark.parametrize("seed", range(6))
def test_the_cut_is_the_cheapest_allowed_one(seed):
    rng = random.Random(seed)
    widths = sorted((rng.randint(2, 40) for _ in range(10)), reverse=True)
    batch_size, min_tokens, batch_cost = rng.choice([1, 2, 3]), rng.choice([0, 40, 120]), 15
    got = group_rows(widths, batch_size, min_tokens, batch_cost)
    assert _allowed(widths, got, batch_size, min_tokens)
    best = min(
        _cost(widths, groups, batch_cost)
        for groups in _compositions(len(widths))
        if _allowed(widths, groups, batch_size, min_tokens)
    )
    assert _cost(widths, got, batch_cost) == best


def test_short_rows_are_not_padded_to_long_ones():
    # the old fixed cut put all ten rows in one batch of width 40: 400 tokens
    widths = [40, 39, 38, 10, 10, 10, 10, 10, 10, 10]
    groups = group_rows(widths, 1, 1024, 40)
    assert groups == [3, 7]
    assert _cost(widths, groups, 0) == 3 * 40 + 7 * 10


def test_unsorted_rows_are_refused():
    with pytest.raises(ValueError, match="sorted longest first"):
        group_rows([3, 5], 1, 0, 0)
