from medsettle.runtime import run
from services.basic.app import BasicStage

run(BasicStage)
