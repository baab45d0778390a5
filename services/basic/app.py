"""The basic stage: basic medical insurance (基本医保, fund 390100)."""

from __future__ import annotations

from medsettle import topics
from medsettle.contract import LayerName
from medsettle.layerstage import LayerStage
from medsettle.runtime import create_app
from medsettle.settings import Settings
from services.basic.rules import BasicAccumulator, settle_basic


class BasicStage(LayerStage):
    name = "basic"
    layer = LayerName.BASIC
    in_topic = topics.ELIGIBLE
    out_topic = topics.BASIC
    accumulator_type = BasicAccumulator
    apply = staticmethod(settle_basic)


def app(settings: Settings | None = None):  # noqa: ANN201 - faststream app
    return create_app(BasicStage, settings)
