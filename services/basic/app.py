"""The basic stage: basic medical insurance (基本医保, fund 390100)."""

from __future__ import annotations

from medsettle.layerstage import LayerStage
from medsettle.runtime import create_app
from medsettle.settings import Settings
from services import pipeline


class BasicStage(LayerStage):
    definition = pipeline.stage("basic")


def app(settings: Settings | None = None):  # noqa: ANN201 - faststream app
    return create_app(BasicStage, settings)
