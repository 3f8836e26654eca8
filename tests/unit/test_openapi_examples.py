"""Every example in the OpenAPI document passes the validator of what it illustrates:
a schema's examples its pydantic model, a property's its field, a parameter's or a
request body's the route's own. An MRN anywhere in an example has a right check digit.
An example the test cannot tie to a validator fails it, so a new kind is not skipped."""

from __future__ import annotations

import types
import typing
from typing import Any

import pytest
from fastapi import routing
from pydantic import BaseModel

from transit.api.app import create_app
from transit.model import MRN_RE, is_valid_mrn

EXAMPLE_KEYS = ("example", "examples")


def _examples(node: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every ``example``/``examples`` of the document with where it is, each value apart.
    A key under ``properties`` is a property's name, not an example."""
    out: list[tuple[tuple[str, ...], Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = (*path, key)
            if key in EXAMPLE_KEYS and (not path or path[-1] != "properties"):
                if key == "example":
                    out.append((here, value))
                elif isinstance(value, list):  # JSON Schema: a list of values
                    out += [(here, v) for v in value]
                else:  # OpenAPI: a map of Example Objects
                    out += [((*here, name), ex["value"]) for name, ex in value.items()]
            else:
                out += _examples(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _examples(value, (*path, str(i)))
    return out


def _models(annotation: Any, found: dict[str, type[BaseModel]]) -> None:
    """The pydantic models an annotation holds, nested ones included, by name."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation.__name__ not in found:
            found[annotation.__name__] = annotation
            for f in annotation.model_fields.values():
                _models(f.annotation, found)
        return
    for arg in typing.get_args(annotation):
        _models(arg, found)
    if isinstance(annotation, types.UnionType):
        for arg in annotation.__args__:
            _models(arg, found)


def _errors_about(model: type[BaseModel], prop: str, value: Any) -> list[Any]:
    """The model's errors about ``prop`` when it has ``value`` (the other fields absent)."""
    try:
        model.model_validate({prop: value})
    except Exception as exc:  # pydantic.ValidationError
        return [e for e in exc.errors() if e["loc"][:1] == (prop,)]  # type: ignore[attr-defined]
    return []


def _mrns(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if MRN_RE.fullmatch(value) else []
    if isinstance(value, dict):
        return [m for v in value.values() for m in _mrns(v)]
    if isinstance(value, list):
        return [m for v in value for m in _mrns(v)]
    return []


def _app_parts() -> tuple[dict[str, Any], dict[tuple[str, str], Any], dict[str, Any]]:
    """The document, its routes by (path, method) as the document has them (the
    routers' prefixes applied), and the models behind them by name."""
    app = create_app()
    doc = app.openapi()
    routes = {
        (r.path_format, m.lower()): r
        for r in routing.iter_route_contexts(app.routes)
        if isinstance(r.original_route, routing.APIRoute)
        for m in r.methods
    }
    models: dict[str, type[BaseModel]] = {}
    for r in routes.values():
        if r.body_field is not None:
            _models(r.body_field.field_info.annotation, models)
        if r.response_model is not None:
            _models(r.response_model, models)
    return doc, routes, models


def _check(
    where: tuple[str, ...],
    value: Any,
    doc: dict[str, Any],
    routes: dict[tuple[str, str], Any],
    models: dict[str, type[BaseModel]],
) -> str | None:
    """Why the example at ``where`` is invalid, or None; unknown places are a reason."""
    if where[:2] == ("components", "schemas"):
        name = where[2].removesuffix("-Input").removesuffix("-Output")
        model = models.get(name)
        if model is None:
            return f"no model behind schema {where[2]}"
        if where[3] in EXAMPLE_KEYS:
            try:
                model.model_validate(value)
            except Exception as exc:
                return str(exc)
            return None
        if where[3] == "properties":
            errors = _errors_about(model, where[4], value)
            return str(errors) if errors else None
    if where[0] == "paths":
        route = routes.get((where[1], where[2]))
        if route is None:
            return "no route"
        if where[3] == "parameters":
            spec = doc["paths"][where[1]][where[2]]["parameters"][int(where[4])]
            params = [
                *route.dependant.path_params,
                *route.dependant.query_params,
                *route.dependant.header_params,
            ]
            field = next((p for p in params if p.alias == spec["name"]), None)
            if field is None:
                return f"no parameter {spec['name']}"
            _, errors = field.validate(value, {}, loc=(spec["in"], spec["name"]))
            return str(errors) if errors else None
        if where[3] == "requestBody" and route.body_field is not None:
            _, errors = route.body_field.validate(value, {}, loc=("body",))
            return str(errors) if errors else None
    return "no validator known for an example here"


def _why_invalid(
    where: tuple[str, ...],
    value: Any,
    doc: dict[str, Any],
    routes: dict[tuple[str, str], Any],
    models: dict[str, type[BaseModel]],
) -> str | None:
    """Why an example is invalid (its validator's reasons, an MRN's check digit), or None."""
    why = _check(where, value, doc, routes, models)
    wrong = [m for m in _mrns(value) if not is_valid_mrn(m)]
    if wrong:
        why = f"{why or ''} MRN with a wrong check digit: {wrong}".strip()
    return why


def test_every_example_in_the_openapi_document_is_valid() -> None:
    doc, routes, models = _app_parts()
    found = _examples(doc)
    # The declaration's example (and its MRN) must be among them.
    assert any(w[:3] == ("components", "schemas", "TransitIn") for w, _ in found), found
    bad = {}
    for where, value in found:
        why = _why_invalid(where, value, doc, routes, models)
        if why:
            bad["/".join(where)] = why
    assert bad == {}


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (
            ("components", "schemas", "TransitIn", "properties", "mrn", "examples"),
            "26MYS001T0000003A2",
        ),
        (("components", "schemas", "TransitIn", "examples"), {"mrn": "26MYS001T0000003A6"}),
        (("paths", "/api/v1/transits", "get", "parameters", "0", "schema", "examples"), "XX"),
        (("info", "x-examples"), 1),
        (
            ("paths", "/api/v1/transits/{mrn}", "get", "parameters", "0", "schema", "examples"),
            "26MYS001T0000003A2",
        ),
    ],
)
def test_the_example_check_refuses_what_is_invalid(where, value) -> None:
    """The check can fail: the old MRN example, a declaration without its fields, a bad
    status filter, an example nothing validates, and an MRN path parameter whose check
    digit is wrong (the path's pattern lets it through) are each refused."""
    doc, routes, models = _app_parts()
    assert _why_invalid(where, value, doc, routes, models) is not None
