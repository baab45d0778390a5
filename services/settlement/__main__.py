from medsettle.runtime import run
from services.settlement.app import SettlementStage

run(SettlementStage)
