"""The plan catalogue (app/catalogue.yaml): plan names and monthly prices."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

PATH = Path(__file__).parent / "catalogue.yaml"


class Plan(BaseModel):
    speed_mbps: int = Field(gt=0)
    monthly_price: float = Field(gt=0)


class Catalogue(BaseModel):
    currency: str
    plans: dict[str, Plan]

    def price(self, plan: str) -> float:
        if plan not in self.plans:
            raise KeyError(f"plan {plan!r} is not in the catalogue")
        return self.plans[plan].monthly_price


@cache
def catalogue() -> Catalogue:
    return Catalogue.model_validate(yaml.safe_load(PATH.read_text()))
