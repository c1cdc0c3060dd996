"""The runner's audience cursor (pages, positions, the tail) and its first wave of
batches (pure logic, no Ray)."""

from __future__ import annotations

from collections import deque

from actors.campaign_runner import AudienceCursor, first_wave_size


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


def test_the_first_wave_grows_so_that_batch_boundaries_fall_apart() -> None:
    # 16 tasks of 100: the first batches end 1/16 of a batch apart, and stay apart.
    sizes = [first_wave_size(seq, 100, 16) for seq in range(18)]
    assert sizes[:4] == [7, 13, 19, 25] and sizes[15:] == [100, 100, 100]
    assert sizes == sorted(sizes) and len(set(sizes[:16])) == 16
    assert [first_wave_size(seq, 500, 2) for seq in range(3)] == [250, 500, 500]
    assert [first_wave_size(seq, 100, 1) for seq in range(2)] == [100, 100]  # one task
    assert first_wave_size(0, 5, 16) == 1  # never an empty batch
