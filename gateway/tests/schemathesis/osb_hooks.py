# schemathesis hooks of gateway/tests/schemathesis.rs, loaded with SCHEMATHESIS_HOOKS=osb_hooks
# (PYTHONPATH pointing here).
#
# Generated ids are random strings, so left alone nearly every instance call stops at "unknown
# plan" (400) or "no such instance" (404/410) and nothing ever reaches an upstream broker. In
# positive mode, half of the cases get real ids: service_id/plan_id pairs of the gateway's catalog
# (OSB_SCHEMATHESIS_PLANS, a JSON list of [service_id, plan_id]) and instance/binding ids from a
# small pool (one instance id per plan), so provisions are forwarded and answered 201/202 by the
# upstream, and the fetches, updates, binds, polls and deletes that follow find what was made. Negative-mode cases (meant
# to be refused) are left exactly as generated.
import copy
import json
import os

import schemathesis
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

PLANS = [tuple(pair) for pair in json.loads(os.environ.get("OSB_SCHEMATHESIS_PLANS", "[]"))]
# Instance i always has plan PLANS[i], so a bind, update or delete of an instance names the plan it
# was provisioned with (a random pairing would mostly be refused as "plan of another service").
INSTANCES = [f"st-instance-{i}" for i in range(len(PLANS))]
BINDINGS = ["st-binding-1", "st-binding-2"]
# The platform's Authorization header (the CLI's --auth adds it only when sending; a changed case is
# re-checked against the file, which would otherwise see a required header missing and call the
# case negative).
AUTHORIZATION = os.environ.get("OSB_SCHEMATHESIS_AUTHORIZATION")


@schemathesis.hook
def flatmap_case(context, case):
    meta = getattr(case, "_meta", None)
    if not PLANS or meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return st.just(case)
    choices = st.tuples(
        st.booleans(),
        st.integers(min_value=0, max_value=len(PLANS) - 1),
        st.sampled_from(BINDINGS),
        st.booleans(),
    )
    return choices.map(lambda choice: with_real_ids(case, *choice))


def with_real_ids(case, use, index, binding_id, drop_parameters):
    if not use:
        return case
    # New containers, never edits in place: schemathesis tracks assignments and re-checks the case.
    if AUTHORIZATION:
        case.headers = {**(case.headers or {}), "Authorization": AUTHORIZATION}
    service_id, plan_id = PLANS[index]
    instance_id = INSTANCES[index]
    case.path_parameters = dict(case.path_parameters or {})
    if "instance_id" in case.path_parameters:
        case.path_parameters["instance_id"] = instance_id
    if "binding_id" in case.path_parameters:
        case.path_parameters["binding_id"] = binding_id
    if isinstance(case.body, dict):
        body = copy.deepcopy(case.body)
        body["service_id"] = service_id
        if "plan_id" in body or case.method.upper() == "PUT":
            body["plan_id"] = plan_id
        previous = body.get("previous_values")
        if isinstance(previous, dict):
            previous["plan_id"] = plan_id
            if "service_id" in previous:
                previous["service_id"] = service_id
        if drop_parameters:
            # Random parameters rarely pass a plan's JSON schema (checked before forwarding).
            body.pop("parameters", None)
        case.body = body
    if isinstance(case.query, dict):
        query = dict(case.query)
        if "service_id" in query:
            query["service_id"] = service_id
        if "plan_id" in query:
            query["plan_id"] = plan_id
        case.query = query
    return case

