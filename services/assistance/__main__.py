from medsettle.runtime import run
from services.assistance.app import AssistanceStage

run(AssistanceStage)
