"""The backstop stage: government backstop (政府兜底, fund 640100)."""

from __future__ import annotations

from medsettle.layerstage import LayerStage
from medsettle.runtime import create_app
from medsettle.settings import Settings
from services import pipeline


class BackstopStage(LayerStage):
    definition = pipeline.stage("backstop")


def app(settings: Settings | None = None):  # noqa: ANN201 - faststream app
    return create_app(BackstopStage, settings)
