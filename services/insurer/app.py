"""The insurer stage: serious-illness insurance (大病保险, fund 390200), run by the outsourced insurer."""

from __future__ import annotations

from medsettle import topics
from medsettle.contract import LayerName
from medsettle.layerstage import LayerStage
from medsettle.runtime import create_app
from medsettle.settings import Settings
from services.insurer.rules import SeriousIllnessAccumulator, settle_serious_illness


class SeriousIllnessStage(LayerStage):
    name = "insurer"
    layer = LayerName.SERIOUS_ILLNESS
    in_topic = topics.BASIC
    out_topic = topics.SERIOUS_ILLNESS
    accumulator_type = SeriousIllnessAccumulator
    apply = staticmethod(settle_serious_illness)


def app(settings: Settings | None = None):  # noqa: ANN201 - faststream app
    return create_app(SeriousIllnessStage, settings)
