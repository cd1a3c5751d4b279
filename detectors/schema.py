"""The JSON Schema of the access event, generated from the pydantic models.

The models are the source of truth; this schema is what we publish to producers, and a test
checks it agrees with the contract's ``access-event.schema.json``. Optional fields are written
as "absent or a value" (no ``null``), as the contract and the models' null check say.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from detectors.models import AccessEvent


class _ContractSchema(GenerateJsonSchema):
    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        generated = super().default_schema(schema)
        if generated.get("default", ...) is None:
            generated.pop("default")
        return generated


def access_event_schema() -> dict[str, Any]:
    schema = AccessEvent.model_json_schema(schema_generator=_ContractSchema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "access-event.v1"
    return schema
