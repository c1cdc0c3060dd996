"""The runner's audience cursor: pages, positions and the tail (pure logic, no Ray)."""

from __future__ import annotations

from collections import deque

from actors.campaign_runner import AudienceCursor


def cursor_on_last_page(remaining: int, pages: int = 1) -> AudienceCursor:
    cursor = AudienceCursor({"tag": "t"}, pages, [pages - 1, None], seen_page=-1, seen=0)
    cursor.buffer, cursor.loaded = deque(f"c{n:05d}" for n in range(remaining)), pages - 1
    return cursor


def test_full_batches_until_the_last_page_is_known() -> None:
    unknown = AudienceCursor({"tag": "t"}, 32, None, seen_page=-1, seen=0)
    assert unknown.remaining_if_known() is None
    assert unknown.tail_size(100, 8) == 100
    assert cursor_on_last_page(5000).tail_size(100, 8) == 100


def test_the_tail_is_shared_by_every_worker() -> None:
    # 700 left for 8 workers: 88 each rather than seven full batches and one idle wave.
    assert cursor_on_last_page(700).tail_size(100, 8) == 88
    assert cursor_on_last_page(700, pages=1024).tail_size(100, 8) == 88
    assert cursor_on_last_page(50).tail_size(100, 8) == 10  # the floor
    assert cursor_on_last_page(100).tail_size(50, 4) == 25
    assert cursor_on_last_page(3).tail_size(5, 2) == 5  # never below min(batch, 10)
    assert cursor_on_last_page(0).tail_size(100, 4) == 10
