from medsettle.runtime import run
from services.insurer.app import SeriousIllnessStage

run(SeriousIllnessStage)
