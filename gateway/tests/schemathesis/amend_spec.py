#!/usr/bin/env python3
# amend_spec.py SPEC OUT: writes the OSB OpenAPI file (fixtures/osb-openapi-v2.17.yaml) with the
# amendments below, for gateway/tests/schemathesis.rs. Each amendment is a place where the OSB prose
# specification (which wins over the OpenAPI file, see the file's own header and OSB-NOTES.md) or a
# documented gateway decision allows an answer the OpenAPI file does not list. Nothing else changes:
# every other status, header and body the gateway sends must conform to the file as published.
# Runs with the venv of .ci/setup-python (PyYAML comes with schemathesis).
import sys

import yaml

ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}

# Status codes any operation may answer, with why.
EVERY_OPERATION = {
    # Prose: "the Platform MUST authenticate"; a request without valid credentials gets 401 on every
    # endpoint. The file lists 401 on some operations only (not on GET /v2/catalog, fetches).
    "401": "Unauthorized (prose: authentication applies to every endpoint)",
    # Prose: a broker MAY reject an unsupported X-Broker-API-Version with 412 Precondition Failed;
    # the gateway answers 412 for a missing or non-2.x version on every endpoint.
    "412": "Precondition Failed (prose: unsupported or missing X-Broker-API-Version)",
    # Prose: 400 Bad Request for a malformed request. The gateway checks ids on every endpoint
    # (1-255 of A-Z a-z 0-9 - . _ ~), query strings (percent-encoding, accepts_incomplete,
    # empty service_id/plan_id/operation) before anything is forwarded; fetches list no 400.
    "400": "Bad Request (prose: malformed request; ids, query strings checked on every endpoint)",
    # Gateway: a platform over its rate limit (policy `limits:`) gets 429 + Retry-After on any call.
    "429": "Too Many Requests (gateway rate limits, README: Operating it)",
}

# Status codes particular operations may answer, with why.
PER_OPERATION = {
    # README "How calls are routed": update and bind on an instance this platform does not have
    # answer 404, as fetching it does (the file lists 404 for fetches only).
    ("patch", "/v2/service_instances/{instance_id}"): {
        "404": "Not Found (gateway: no such instance for this platform, as a fetch answers)",
    },
    ("put", "/v2/service_instances/{instance_id}/service_bindings/{binding_id}"): {
        "404": "Not Found (gateway: no such instance for this platform, as a fetch answers)",
    },
    # Prose (OSB-NOTES "fetch instance: 200, 404, 422"): 422 while the resource is being updated;
    # the gateway passes the upstream's 422 through, for bindings likewise.
    ("get", "/v2/service_instances/{instance_id}"): {
        "422": "Unprocessable Entity (prose: being updated, cannot be fetched now)",
    },
    ("get", "/v2/service_instances/{instance_id}/service_bindings/{binding_id}"): {
        "422": "Unprocessable Entity (prose: being updated, cannot be fetched now)",
    },
}


def main(spec_path, out_path):
    with open(spec_path, encoding="utf-8") as f:
        spec = yaml.safe_load(f)

    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            extra = dict(EVERY_OPERATION)
            extra.update(PER_OPERATION.get((method, path), {}))
            for status, description in extra.items():
                responses.setdefault(status, {"description": description, "content": ERROR})

    # The catalog is the upstreams' own, passed through unchanged (DESIGN.md, README "How the
    # catalog works"): the GCP Service Broker sends `"parameters": null` in its update schemas.
    # The prose says only that parameters are "the schema definitions for the input parameters";
    # the gateway does not rewrite upstream schemas, so null is allowed there.
    schema = spec["components"]["schemas"]["ServiceInstanceSchema"]["properties"]
    for action in ("create", "update"):
        schema[action]["properties"]["parameters"]["nullable"] = True
    binding = spec["components"]["schemas"]["ServiceBindingSchema"]["properties"]
    binding["create"]["properties"]["parameters"]["nullable"] = True

    with open(out_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(spec, f, sort_keys=False)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: amend_spec.py SPEC OUT")
    main(sys.argv[1], sys.argv[2])
