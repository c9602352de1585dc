"""Typed registry errors carrying Confluent's HTTP status and error code.

Every error a client can see is built here so that the status/error-code pairs
and message wording stay consistent with Confluent Schema Registry.
"""

from __future__ import annotations


class RegistryError(Exception):
    """An error that maps to a Confluent-style JSON error response.

    Parameters
    ----------
    status : int
        HTTP status code of the response.
    error_code : int
        Confluent ``error_code`` field (often a 5-digit refinement of ``status``).
    message : str
        Human-readable ``message`` field.
    """

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message

    def to_body(self) -> dict[str, object]:
        """Return the JSON body Confluent clients expect.

        Returns
        -------
        dict
            ``{"error_code": ..., "message": ...}``.
        """
        return {"error_code": self.error_code, "message": self.message}


def subject_not_found(subject: str) -> RegistryError:
    """Build the 40401 error for an unknown subject."""
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


def version_not_found(version: int | str) -> RegistryError:
    """Build the 40402 error for an unknown version of a known subject."""
    return RegistryError(404, 40402, f"Version {version} not found.")


def schema_not_found(schema_id: int | str | None = None) -> RegistryError:
    """Build the 40403 error for an unknown schema (by id or by content)."""
    if schema_id is None:
        return RegistryError(404, 40403, "Schema not found")
    return RegistryError(404, 40403, f"Schema {schema_id} not found")


def subject_soft_deleted(subject: str) -> RegistryError:
    """Build the 40404 error: soft-deleting a subject that is already soft-deleted."""
    return RegistryError(404, 40404, f"Subject '{subject}' was soft deleted.Set permanent=true to delete permanently")


def subject_not_soft_deleted(subject: str) -> RegistryError:
    """Build the 40405 error: permanent delete requires a prior soft delete."""
    return RegistryError(404, 40405, f"Subject '{subject}' was not deleted first before being permanently deleted")


def version_soft_deleted(subject: str, version: int | str) -> RegistryError:
    """Build the 40406 error: soft-deleting a version that is already soft-deleted."""
    return RegistryError(
        404,
        40406,
        f"Subject '{subject}' Version {version} was soft deleted.Set permanent=true to delete permanently",
    )


def version_not_soft_deleted(subject: str, version: int | str) -> RegistryError:
    """Build the 40407 error: permanent version delete requires a prior soft delete."""
    return RegistryError(
        404,
        40407,
        f"Subject '{subject}' Version {version} was not deleted first before being permanently deleted",
    )


def subject_compatibility_not_configured(subject: str) -> RegistryError:
    """Build the 40408 error: no subject-level compatibility and no defaultToGlobal."""
    return RegistryError(404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured")


def subject_mode_not_configured(subject: str) -> RegistryError:
    """Build the 40409 error: no subject-level mode and no defaultToGlobal."""
    return RegistryError(404, 40409, f"Subject '{subject}' does not have subject-level mode configured")


def incompatible_schema(subject: str, details: list[str]) -> RegistryError:
    """Build the 409 error for a schema that breaks the subject's compatibility level.

    Confluent Platform answers HTTP 409 with ``error_code`` 409 (very recent
    upstream builds use 40901); clients key on the HTTP status either way.
    """
    joined = ", ".join(details)
    return RegistryError(
        409,
        409,
        f'Schema being registered is incompatible with an earlier schema for subject "{subject}", details: [{joined}]',
    )


def invalid_schema(detail: str) -> RegistryError:
    """Build the 42201 error for an unparsable or unsupported schema."""
    return RegistryError(422, 42201, detail)


def invalid_version(version: str) -> RegistryError:
    """Build the 42202 error for a version that is not an int in [1, 2^31-1] or 'latest'."""
    return RegistryError(
        422,
        42202,
        f"The specified version '{version}' is not a valid version id. "
        'Allowed values are between [1, 2^31-1] and the string "latest"',
    )


def invalid_compatibility_level(level: object = None) -> RegistryError:
    """Build the 42203 error for an unknown compatibility level."""
    return RegistryError(
        422,
        42203,
        "Invalid compatibility level. Valid values are none, backward, forward, full, "
        "backward_transitive, forward_transitive, and full_transitive",
    )


def invalid_mode(mode: object) -> RegistryError:
    """Build the 42204 error for an unknown mode."""
    return RegistryError(
        422, 42204, f"Invalid mode {mode!r}. Valid values are READWRITE, READONLY, READONLY_OVERRIDE and IMPORT"
    )


def operation_not_permitted(message: str) -> RegistryError:
    """Build the 42205 error for an operation this registry refuses."""
    return RegistryError(422, 42205, message)


def invalid_subject(subject: str) -> RegistryError:
    """Build the 42208 error for an unusable subject name."""
    return RegistryError(422, 42208, f"The specified subject '{subject}' is not a valid subject name")


def bad_request(message: str) -> RegistryError:
    """Build a plain 400 error (malformed JSON, wrong body shape)."""
    return RegistryError(400, 400, message)


def unprocessable(message: str) -> RegistryError:
    """Build a plain 422 error (missing request body)."""
    return RegistryError(422, 422, message)


def store_error(message: str) -> RegistryError:
    """Build the 50001 error for a failure to persist or an internal fault."""
    return RegistryError(500, 50001, message)
