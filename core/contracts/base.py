"""The base of every message contract: versioned JSON, validated at the edge.

A leaf module (imports nothing of the project), so each producing package can define its own
contract on it without importing another package. Unknown fields are tolerated (newer producers may
add some); missing fields, wrong types and unknown ``schema_version`` values are errors.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ContractError(ValueError):
    """A payload that does not satisfy its contract; the message says what is wrong and where."""

    def __init__(self, contract: str, problems: list[str]) -> None:
        self.contract = contract
        self.problems = problems
        super().__init__(f"invalid {contract}: " + "; ".join(problems))


# Strict types everywhere, except timestamps, which JSON can only carry as ISO 8601 text.
Timestamp = Annotated[datetime, Field(strict=False)]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Contract(BaseModel):
    """Frozen, strictly typed message. Subclasses set ``SCHEMA_VERSION`` and declare their fields."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    SCHEMA_VERSION: ClassVar[int] = 1
    schema_version: int = 1

    @model_validator(mode="before")
    @classmethod
    def _known_version(cls, data: Any) -> Any:
        if isinstance(data, dict):
            version = data.setdefault("schema_version", cls.SCHEMA_VERSION)
            if version != cls.SCHEMA_VERSION:
                raise ValueError(
                    f"unknown schema_version {version!r} (this build reads {cls.SCHEMA_VERSION})"
                )
        return data

    @classmethod
    def parse(cls, payload: bytes | str | dict[str, Any]) -> Self:
        """Validate a JSON payload (bytes, text or an already decoded dict); raise :class:`ContractError`."""
        try:
            if isinstance(payload, dict):
                return cls._from_dict(payload)
            return cls.model_validate_json(payload)
        except ValidationError as exc:
            raise ContractError(cls.__name__, _describe(exc)) from None
        except ValueError as exc:  # malformed JSON text is reported by pydantic as ValidationError too
            raise ContractError(cls.__name__, [str(exc)]) from None

    @classmethod
    def _from_dict(cls, payload: dict[str, Any]) -> Self:
        # Dicts come from decoded JSON, so validate them with JSON semantics (ISO datetimes as strings).
        import json

        return cls.model_validate_json(json.dumps(payload, default=str))

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _describe(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        kind = err["type"]
        if kind == "missing":
            problems.append(f"{where}: missing field")
        elif kind == "json_invalid":
            problems.append(f"not valid JSON ({err['msg']})")
        elif kind in {"model_type", "model_attributes_type"}:
            problems.append("payload: expected a JSON object")
        else:
            problems.append(f"{where}: {err['msg']} (got {err.get('input')!r:.60})")
    return problems
