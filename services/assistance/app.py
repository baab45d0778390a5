"""The assistance stage: medical assistance (医疗救助, fund 610100)."""

from __future__ import annotations

from medsettle import topics
from medsettle.contract import LayerName
from medsettle.layerstage import LayerStage
from medsettle.runtime import create_app
from medsettle.settings import Settings
from services.assistance.rules import AssistanceAccumulator, settle_assistance


class AssistanceStage(LayerStage):
    name = "assistance"
    layer = LayerName.ASSISTANCE
    in_topic = topics.SERIOUS_ILLNESS
    out_topic = topics.ASSISTANCE
    accumulator_type = AssistanceAccumulator
    apply = staticmethod(settle_assistance)


def app(settings: Settings | None = None):  # noqa: ANN201 - faststream app
    return create_app(AssistanceStage, settings)
