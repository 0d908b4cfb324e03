"""Canonical JSON, object keys, content digests, and the naming rules of datasets and references.

Keys must not change between runs, machines or Python versions, so the JSON they hash is
canonical: sorted keys, no whitespace, UTF-8, tuples as lists, integral floats written as
integers (``1.0`` and ``1`` are the same parameter), other floats in Python's shortest
round-trip form, and no NaN/infinity.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tasks.store.errors import CanonicalJSONError, InvalidKeyError, InvalidNameError

HASH_CHUNK_BYTES = 1 << 20
_MAX_EXACT_FLOAT_INT = 2**53

_KEY_RE = re.compile(r"[0-9a-f]{64}")
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
RESERVED_SELECTORS = frozenset({"latest"})


def canonical_value(value: Any, where: str = "value") -> Any:
    """Return ``value`` rebuilt from plain JSON types; raise CanonicalJSONError naming the bad part."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise CanonicalJSONError(f"{where} is {number!r}; JSON allows only finite numbers")
        if number.is_integer() and abs(number) < _MAX_EXACT_FLOAT_INT:
            return int(number)
        return number
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalJSONError(
                    f"{where} has a key {key!r} of type {type(key).__name__}; only string keys are allowed"
                )
            result[key] = canonical_value(item, f"{where}.{key}")
        return result
    if isinstance(value, (list, tuple)):
        return [canonical_value(item, f"{where}[{index}]") for index, item in enumerate(value)]
    raise CanonicalJSONError(
        f"{where} is a {type(value).__name__} ({value!r:.80}); expected None, bool, int, float, str, "
        "list, tuple or a mapping with string keys (convert paths and enums to strings first)"
    )


def canonical_json(value: Any, where: str = "value") -> str:
    """The one JSON text of ``value`` that keys are hashed from."""
    return json.dumps(
        canonical_value(value, where),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def object_key(
    stage: str, stage_version: int, params: Mapping[str, Any], inputs: Sequence[str]
) -> str:
    """The key of one stage's output: sha256 of the canonical JSON of stage, version, params, inputs.

    ``inputs`` are other object keys or ``sha256:<hex>`` content digests; their order matters.
    """
    validate_stage(stage)
    if isinstance(stage_version, bool) or not isinstance(stage_version, int) or stage_version < 0:
        raise InvalidNameError(
            f"stage_version of stage {stage!r} must be a non-negative int, got {stage_version!r}"
        )
    if not isinstance(params, Mapping):
        raise CanonicalJSONError(
            f"params of stage {stage!r} must be a mapping, got {type(params).__name__}"
        )
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
        raise InvalidKeyError(
            f"inputs of stage {stage!r} must be a sequence of keys/digests, got {type(inputs).__name__}"
        )
    for entry in inputs:
        validate_input_ref(entry)
    document = {
        "stage": stage,
        "stage_version": stage_version,
        "params": params,
        "inputs": list(inputs),
    }
    return sha256_hex(canonical_json(document, where="object"))


def file_digest(path: str | os.PathLike[str]) -> str:
    """``sha256:<hex>`` of a local file's bytes, read in 1 MiB chunks."""
    return "sha256:" + hash_local_file(Path(path))[1]


def is_object_key(value: object) -> bool:
    return isinstance(value, str) and _KEY_RE.fullmatch(value) is not None


def validate_object_key(value: object) -> str:
    if not is_object_key(value):
        raise InvalidKeyError(f"{value!r} is not an object key (expected 64 lowercase hex digits)")
    return value  # type: ignore[return-value]


def validate_input_ref(value: object) -> str:
    if is_object_key(value) or (isinstance(value, str) and _DIGEST_RE.fullmatch(value)):
        return value  # type: ignore[return-value]
    raise InvalidKeyError(
        f"input {value!r} is neither an object key (64 lowercase hex digits) nor a content digest "
        "('sha256:' + 64 lowercase hex digits, see file_digest)"
    )


def _validate(kind: str, value: object) -> str:
    if not isinstance(value, str) or _NAME_RE.fullmatch(value) is None:
        raise InvalidNameError(
            f"{kind} {value!r} is invalid: use 1-128 characters from lowercase letters, digits, "
            "'-', '_' and '.', starting with a letter or digit"
        )
    return value


def validate_dataset_name(name: object) -> str:
    return _validate("dataset name", name)


def validate_stage(stage: object) -> str:
    return _validate("stage name", stage)


def validate_tag(tag: object) -> str:
    _validate("tag", tag)
    if tag in RESERVED_SELECTORS or str(tag).isdigit():
        raise InvalidNameError(
            f"tag {tag!r} is reserved: 'latest' and plain integers select versions"
        )
    return tag  # type: ignore[return-value]


def parse_ref(ref: str) -> tuple[str, int | str]:
    """Split ``name``, ``name@3``, ``name@latest`` or ``name@tag`` into (name, selector).

    The selector is an int for a version number, ``"latest"`` for a bare name or ``@latest``,
    otherwise the tag name.
    """
    if not isinstance(ref, str):
        raise InvalidNameError(f"dataset reference must be a string, got {type(ref).__name__}")
    name, at, selector = ref.partition("@")
    validate_dataset_name(name)
    if not at:
        return name, "latest"
    if selector.isdigit():
        version = int(selector)
        if version < 1:
            raise InvalidNameError(f"reference {ref!r}: versions start at 1")
        return name, version
    if selector in RESERVED_SELECTORS:
        return name, selector
    try:
        return name, validate_tag(selector)
    except InvalidNameError as error:
        raise InvalidNameError(
            f"reference {ref!r} is invalid: expected name, name@<version>, name@latest or name@<tag> ({error})"
        ) from None


def hash_local_file(path: Path, *, sync: bool = False) -> tuple[int, str]:
    """(size, sha256 hex) of a local file; ``sync`` also flushes it to disk (before a publish)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
        if sync:
            os.fsync(handle.fileno())
    return size, digest.hexdigest()
