"""The backstop stage: government backstop (政府兜底, fund 640100)."""

from __future__ import annotations

from medsettle import topics
from medsettle.contract import LayerName
from medsettle.layerstage import LayerStage
from medsettle.runtime import create_app
from medsettle.settings import Settings
from services.backstop.rules import BackstopAccumulator, settle_backstop


class BackstopStage(LayerStage):
    name = "backstop"
    layer = LayerName.BACKSTOP
    in_topic = topics.ASSISTANCE
    out_topic = topics.BACKSTOP
    accumulator_type = BackstopAccumulator
    apply = staticmethod(settle_backstop)


def app(settings: Settings | None = None):  # noqa: ANN201 - faststream app
    return create_app(BackstopStage, settings)
