from medsettle.runtime import run
from services.eligibility.app import EligibilityStage

run(EligibilityStage)
