"""Every public field of the contract's messages, and of the gateway's requests
and answers, says what it is and shows an example, so that the AsyncAPI and
OpenAPI documents (``make docs``) are the contract a newcomer reads (CONTRACT
§2–§6, §8, §9)."""

from __future__ import annotations

import typing
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, TypeAdapter

from medsettle.contract import CancelClaim, Hospital, Person, SettleClaim, SettlementDocument, SettlementResult
from services.gateway.models import Accepted, ApiError, NationalSettlement, Reconciliation, ReconciliationRequest

TOPIC_MESSAGES = (SettleClaim, CancelClaim, Person, Hospital, SettlementDocument, SettlementResult)
GATEWAY_MODELS = (ApiError, Accepted, NationalSettlement, ReconciliationRequest, Reconciliation)


def models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in models_in(arg)]


def messages() -> list[type[BaseModel]]:
    """The messages on the topics, the gateway's bodies, and every model they carry."""
    found: list[type[BaseModel]] = []
    todo = [*TOPIC_MESSAGES, *GATEWAY_MODELS]
    while todo:
        model = todo.pop(0)
        if model not in found:
            found.append(model)
            todo += [m for field in model.model_fields.values() for m in models_in(field.annotation)]
    return found


def test_the_messages_carry_every_model_of_the_contract():
    names = {model.__name__ for model in messages()}
    assert names >= {"Item", "Coverage", "CategorySpan", "PersonFacts", "HospitalFacts", "Breakdown", "Layer",
                     "FundDetail", "Rejection", "NationalFundDetail", "ReconciledClaim", "Totals", "Mismatch"}


@pytest.mark.parametrize("model", messages(), ids=lambda m: m.__name__)
def test_every_field_has_a_description_and_an_example(model: type[BaseModel]):
    for name, field in model.model_fields.items():
        assert field.description, f"{model.__name__}.{name} has no description"
        # A field that is a whole message (a document's claim, say) is shown by its own fields' examples.
        if not models_in(field.annotation) or typing.get_origin(field.annotation) is list:
            assert field.examples, f"{model.__name__}.{name} has no example"


@pytest.mark.parametrize("model", messages(), ids=lambda m: m.__name__)
def test_every_example_is_a_valid_value_of_its_field(model: type[BaseModel]):
    for name, field in model.model_fields.items():
        annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        adapter: TypeAdapter[Any] = TypeAdapter(annotation)
        for example in field.examples or []:
            adapter.validate_python(example)  # raises when the documented example would be refused
