"""Experiments: a journey's random splits, each arm's conversion with a 95% confidence
interval (Wilson's score interval: sound at small counts and near 0 or 1), and the
version that promotes a winner (the split keeps one arm)."""

from __future__ import annotations

import math
from typing import Any

from app.journeys.definition import Journey, Split

Z95 = 1.959964


def wilson(converted: int, entered: int, z: float = Z95) -> tuple[float, float]:
    """The interval of the conversion rate `converted / entered` (0..1)."""
    if entered <= 0:
        return 0.0, 1.0
    p = converted / entered
    denominator = 1 + z * z / entered
    centre = (p + z * z / (2 * entered)) / denominator
    half = z * math.sqrt(p * (1 - p) / entered + z * z / (4 * entered * entered)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def arms_view(journey: Journey, counted: dict[str, Any]) -> list[dict[str, Any]]:
    """Each split step of this version: per arm, who went its way, who converted, the
    rate and its interval."""
    out = []
    for step in journey.steps:
        if not isinstance(step, Split):
            continue
        arms = []
        for arm in step.arms:
            entered = counted["passed"].get(step.id, {}).get(arm.name, 0)
            converted = counted["converted"].get(step.id, {}).get(arm.name, 0)
            low, high = wilson(converted, entered)
            arms.append({"arm": arm.name, "weight": arm.weight, "entered": entered,
                         "converted": converted,
                         "rate": round(converted / entered, 4) if entered else None,
                         "low": round(low, 4), "high": round(high, 4)})
        out.append({"step": step.id, "arms": arms})
    return out


def promoted(journey: Journey, step_id: str, arm_name: str) -> Journey:
    """The journey with split `step_id` keeping only `arm_name` (ValueError when
    there is no such split or arm)."""
    found = next((s for s in journey.steps if s.id == step_id), None)
    if not isinstance(found, Split):
        raise ValueError(f"step {step_id!r} is not a split of this journey")
    winner = next((arm for arm in found.arms if arm.name == arm_name), None)
    if winner is None:
        raise ValueError(f"split {step_id!r} has no arm {arm_name!r}")
    data = journey.model_dump()
    for step in data["steps"]:
        if step["id"] == step_id:
            step["arms"] = [{**winner.model_dump(), "weight": 1.0}]
    return Journey.model_validate(data)
