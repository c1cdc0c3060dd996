"""Experiments as pure logic: the interval of a conversion rate, promoting a winner."""

from __future__ import annotations

import pytest

from app.journeys import experiments
from app.journeys.definition import Journey, Split


def test_wilsons_interval_holds_the_rate_and_narrows_with_more_customers() -> None:
    low, high = experiments.wilson(20, 100)
    assert low < 0.2 < high and (round(low, 3), round(high, 3)) == (0.133, 0.289)
    wide, narrow = experiments.wilson(2, 10), experiments.wilson(200, 1000)
    assert wide[1] - wide[0] > narrow[1] - narrow[0]
    assert experiments.wilson(0, 50)[0] == 0.0 and experiments.wilson(50, 50)[1] == pytest.approx(1)
    assert experiments.wilson(0, 0) == (0.0, 1.0)


def _ab() -> Journey:
    return Journey.model_validate({"name": "ab", "entry": {"event": "e"}, "steps": [
        {"id": "ab", "type": "split", "arms": [{"name": "A", "weight": 1, "next": "a"},
                                               {"name": "B", "weight": 1, "next": "b"}]},
        {"id": "a", "type": "wait", "seconds": 60, "next": "exit"},
        {"id": "b", "type": "wait", "seconds": 60}]})


def test_arms_show_who_went_each_way_and_converted() -> None:
    [split] = experiments.arms_view(_ab(), {"passed": {"ab": {"A": 40, "B": 60}},
                                            "converted": {"ab": {"B": 30}}})
    assert [(a["arm"], a["entered"], a["converted"], a["rate"]) for a in split["arms"]] == [
        ("A", 40, 0, 0.0), ("B", 60, 30, 0.5)]
    assert split["arms"][1]["low"] < 0.5 < split["arms"][1]["high"]


def test_promoting_keeps_one_arm_and_refuses_what_is_not_there() -> None:
    winner = experiments.promoted(_ab(), "ab", "B")
    split = winner.step("ab")
    assert isinstance(split, Split) and [a.name for a in split.arms] == ["B"]
    assert split.arms[0].next == "b"
    with pytest.raises(ValueError, match="no arm"):
        experiments.promoted(_ab(), "ab", "C")
    with pytest.raises(ValueError, match="not a split"):
        experiments.promoted(_ab(), "a", "A")
