from medsettle.runtime import run
from services.operations.app import OperationsService

run(OperationsService)
