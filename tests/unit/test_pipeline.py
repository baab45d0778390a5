"""The pipeline's one definition (services.pipeline) holds together, and libs/ stays below services/."""

from __future__ import annotations

import ast
from pathlib import Path

from medsettle import topics
from medsettle.contract import LayerName
from services import pipeline

ROOT = Path(__file__).resolve().parents[2]


def test_the_stages_form_one_chain_from_the_claims_to_the_answers() -> None:
    assert pipeline.STAGES[0].consumes == topics.CLAIMS
    assert pipeline.STAGES[-1].publishes == topics.SETTLEMENTS
    for before, after in zip(pipeline.STAGES, pipeline.STAGES[1:]):
        assert after.consumes == before.publishes, (before.name, after.name)
    assert len(set(pipeline.NAMES)) == len(pipeline.NAMES)
    assert len({s.port for s in pipeline.STAGES}) == len(pipeline.STAGES)


def test_every_layer_of_the_contract_is_one_stage_with_its_fund() -> None:
    assert [s.layer for s in pipeline.LAYERS] == list(LayerName)
    assert [s.fund for s in pipeline.LAYERS] == ["390100", "390200", "610100", "640100"]


def test_each_service_is_the_stage_it_is_defined_as() -> None:
    for stage in pipeline.STAGES:
        service = stage.service_class()
        assert service.name == stage.name
        if stage.rule is not None:  # a layer stage takes all of it from its definition
            assert (service.in_topic, service.out_topic) == (stage.consumes, stage.publishes)
            assert (service.layer, service.accumulator_type) == (stage.layer, stage.accumulator)
            assert service.apply is stage.rule
        else:
            assert stage.consumes in service.subscriptions


def test_libs_never_import_services() -> None:
    offenders = []
    for path in (ROOT / "libs").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in {"services", "deploy"}]
    assert offenders == []
