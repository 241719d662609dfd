"""The label body takes JSON numbers for region coordinates, never booleans (schemathesis found
``"y": false`` accepted as 0.0)."""

from __future__ import annotations

import pydantic
import pytest

from moderation.api import LabelIn


@pytest.mark.parametrize("value", ["false", "true", '"0.5"', "null"])
def test_a_region_coordinate_must_be_a_number(value: str) -> None:
    body = '{"label": "synthesized", "regions": [{"x": 0.5, "y": VALUE, "w": 0.1, "h": 0.1}]}'.replace(
        "VALUE", value
    )
    with pytest.raises(pydantic.ValidationError):
        LabelIn.model_validate_json(body)


def test_integers_are_numbers_too() -> None:
    body = '{"label": "manipulated", "regions": [{"x": 0, "y": 0.5, "w": 1, "h": 0.25}]}'
    (region,) = LabelIn.model_validate_json(body).regions
    assert (region.x, region.y, region.w, region.h) == (0.0, 0.5, 1.0, 0.25)
