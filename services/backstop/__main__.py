from medsettle.runtime import run
from services.backstop.app import BackstopStage

run(BackstopStage)
