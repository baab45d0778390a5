"""The assistance stage: medical assistance (医疗救助, fund 610100)."""

from __future__ import annotations

from medsettle.layerstage import LayerStage
from medsettle.runtime import create_app
from medsettle.settings import Settings
from services import pipeline


class AssistanceStage(LayerStage):
    definition = pipeline.stage("assistance")


def app(settings: Settings | None = None):  # noqa: ANN201 - faststream app
    return create_app(AssistanceStage, settings)
