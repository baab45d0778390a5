"""The insurer stage: serious-illness insurance (大病保险, fund 390200), run by the outsourced insurer."""

from __future__ import annotations

from medsettle.layerstage import LayerStage
from medsettle.runtime import create_app
from medsettle.settings import Settings
from services import pipeline


class SeriousIllnessStage(LayerStage):
    definition = pipeline.stage("insurer")


def app(settings: Settings | None = None):  # noqa: ANN201 - faststream app
    return create_app(SeriousIllnessStage, settings)
