#!/usr/bin/env python3
"""A fake upstream Open Service Broker built on the `openbrokerapi` package (PyPI, 4.7.3).

The gateway's integration tests spawn it as a real upstream broker:

    python obapi_broker.py --catalog FILE --username U --password P \
        [--host 127.0.0.1] [--port 0] [--async-polls N] [--require-org-space] [--verbose]

* `GET /v2/catalog` serves FILE (`{"services": [...]}`) through openbrokerapi: every service
  becomes an `openbrokerapi.Service` and every plan an `openbrokerapi.ServicePlan`, all keys passed
  through as keyword arguments, so unknown fields survive. Services say they are
  `instances_retrievable` and `bindings_retrievable` (this broker implements both fetches) unless
  the file sets those fields.
* Basic auth with the given credentials (openbrokerapi's `BrokerCredentials`); openbrokerapi
  also requires `X-Broker-API-Version` >= 2.13 on every /v2 request.
* Instances and bindings live in memory, behind one lock. With `accepts_incomplete=true`,
  provision, update and deprovision are asynchronous: they answer 202 with the operation
  `op <kind>/<instance_id>` (a space and a slash, so it must be percent-encoded in the
  `operation` query parameter), and `last_operation` answers "in progress" for the first N
  polls (--async-polls, default 1), then "succeeded". A deprovision removes the instance when
  its operation succeeds; after that `last_operation` answers 410. Without `accepts_incomplete`
  every operation is synchronous. Binds and unbinds are always synchronous.
* Every request received (also those refused by auth or version checks) is recorded and served
  as a JSON list at `GET /__recorded` (no auth); `DELETE /__recorded` clears the list.
* Once listening, prints exactly one line `LISTENING <port>` to stdout. Logs go to stderr,
  quiet unless --verbose. SIGTERM and SIGINT exit cleanly with status 0.
"""

import argparse
import ssl
import copy
import json
import logging
import signal
import sys
import threading
from json.decoder import JSONDecodeError

from flask import Flask, g, jsonify, request
from werkzeug.serving import make_server

import openbrokerapi.settings
from openbrokerapi import api, errors
from openbrokerapi.auth import BrokerCredentials
from openbrokerapi.catalog import ServicePlan
from openbrokerapi.helper import to_json_response
from openbrokerapi.response import EmptyResponse
from openbrokerapi.service_broker import (
    Binding,
    BindState,
    DeprovisionServiceSpec,
    GetBindingSpec,
    GetInstanceDetailsSpec,
    LastOperation,
    OperationState,
    ProvisionedServiceSpec,
    ProvisionState,
    Service,
    ServiceBroker,
    UnbindSpec,
    UpdateServiceSpec,
)

LOG = logging.getLogger("obapi_broker")

# Headers copied into every recorded request (null when absent).
RECORDED_HEADERS = (
    "X-Broker-API-Version",
    "X-Broker-API-Originating-Identity",
    "X-Broker-API-Request-Identity",
)


def operation_string(kind, instance_id):
    """The operation returned by an async provision/update/deprovision.

    It holds a space and a slash on purpose: a client that does not percent-encode it in the
    `operation` query parameter of last_operation gets it back mangled (and a 400).
    """
    return f"op {kind}/{instance_id}"


def load_catalog(path):
    """Reads `{"services": [...]}` and builds openbrokerapi Service/ServicePlan objects.

    Every key is passed through as a keyword argument, so fields openbrokerapi does not know
    survive. Plans become ServicePlan objects because openbrokerapi's plan_id check reads
    `plan.id` as an attribute.
    """
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get("services"), list):
        raise ValueError(f"{path}: expected a JSON object with a 'services' list")
    services = []
    for i, svc in enumerate(data["services"]):
        try:
            svc = dict(svc)
            # This broker implements both fetches: say so, unless the file says otherwise.
            svc.setdefault("instances_retrievable", True)
            svc.setdefault("bindings_retrievable", True)
            svc["plans"] = [ServicePlan(**plan) for plan in svc.get("plans", [])]
            services.append(Service(**svc))
        except TypeError as e:
            raise ValueError(f"{path}: services[{i}] ({svc.get('name')!r}): {e}") from e
    return services


class Operation:
    def __init__(self, kind, operation, polls):
        self.kind = kind  # "provision" | "update" | "deprovision"
        self.operation = operation
        self.polls_left = polls
        self.state = OperationState.IN_PROGRESS


class Instance:
    def __init__(self, service_id, plan_id, parameters, context):
        self.service_id = service_id
        self.plan_id = plan_id
        self.parameters = parameters
        self.context = context
        self.op = None  # last asynchronous Operation, None after a synchronous one
        self.bindings = {}  # binding_id -> BindingRecord


class BindingRecord:
    def __init__(self, service_id, plan_id, parameters, bind_resource, app_guid, credentials):
        self.service_id = service_id
        self.plan_id = plan_id
        self.parameters = parameters
        self.bind_resource = bind_resource
        self.app_guid = app_guid
        self.credentials = credentials


def _params(p):
    if p is None:
        return {}
    if not isinstance(p, dict):
        raise errors.ErrBadRequest("parameters must be a JSON object")
    return copy.deepcopy(p)


def _bind_resource_dict(br):
    if br is None:
        return None
    return {"app_guid": br.app_guid, "route": br.route}


class InMemoryBroker(ServiceBroker):
    def __init__(self, services, async_polls):
        self._services = services
        self._async_polls = async_polls
        self._lock = threading.Lock()
        self._instances = {}  # instance_id -> Instance

    # -- helpers -------------------------------------------------------------------------

    def _service(self, service_id):
        for s in self._services:
            if s.id == service_id:
                return s
        return None

    def _check_service_plan(self, service_id, plan_id):
        service = self._service(service_id)
        if service is None:
            raise errors.ErrBadRequest(f"service_id {service_id!r} not found in the catalog")
        if plan_id is not None and not any(p.id == plan_id for p in service.plans):
            raise errors.ErrBadRequest(f"plan_id {plan_id!r} is not a plan of service {service_id!r}")

    @staticmethod
    def _check_ids(inst, service_id, plan_id, what):
        if service_id is not None and service_id != inst.service_id:
            raise errors.ErrBadRequest(
                f"{what}: service_id {service_id!r} does not match the instance's {inst.service_id!r}"
            )
        if plan_id is not None and plan_id != inst.plan_id:
            raise errors.ErrBadRequest(f"{what}: plan_id {plan_id!r} does not match the instance's {inst.plan_id!r}")

    # -- catalog -------------------------------------------------------------------------

    def catalog(self):
        return self._services

    # -- instances -----------------------------------------------------------------------

    def provision(self, instance_id, details, async_allowed, **kwargs):
        self._check_service_plan(details.service_id, details.plan_id)
        params = _params(details.parameters)
        with self._lock:
            inst = self._instances.get(instance_id)
            if inst is not None:
                identical = (
                    inst.service_id == details.service_id
                    and inst.plan_id == details.plan_id
                    and inst.parameters == params
                )
                if not identical:
                    raise errors.ErrInstanceAlreadyExists()
                op = inst.op
                if op is not None and op.kind == "provision" and op.state == OperationState.IN_PROGRESS:
                    if not async_allowed:
                        raise errors.ErrAsyncRequired()
                    # the same provision is still running: 202 with the same operation
                    return ProvisionedServiceSpec(ProvisionState.IS_ASYNC, operation=op.operation)
                return ProvisionedServiceSpec(ProvisionState.IDENTICAL_ALREADY_EXISTS)

            inst = Instance(details.service_id, details.plan_id, params, copy.deepcopy(details.context))
            self._instances[instance_id] = inst
            if async_allowed:
                inst.op = Operation("provision", operation_string("provision", instance_id), self._async_polls)
                return ProvisionedServiceSpec(ProvisionState.IS_ASYNC, operation=inst.op.operation)
            return ProvisionedServiceSpec(ProvisionState.SUCCESSFUL_CREATED)

    def update(self, instance_id, details, async_allowed, **kwargs):
        params = _params(details.parameters)
        with self._lock:
            inst = self._instances.get(instance_id)
            if inst is None:
                raise errors.ErrBadRequest(f"instance {instance_id!r} does not exist")
            if details.service_id != inst.service_id:
                raise errors.ErrBadRequest(
                    f"update: service_id {details.service_id!r} does not match the instance's {inst.service_id!r}"
                )
            self._check_service_plan(inst.service_id, details.plan_id)
            # applied at once (also for an async update); parameters are merged, PATCH-like
            previous_plan_id = inst.plan_id
            if details.plan_id is not None:
                inst.plan_id = details.plan_id
            inst.parameters.update(params)
            if details.context is not None:
                inst.context = copy.deepcopy(details.context)
            if async_allowed:
                inst.op = Operation("update", operation_string("update", instance_id), self._async_polls)
                inst.op.previous_plan_id = previous_plan_id
                return UpdateServiceSpec(True, operation=inst.op.operation)
            inst.op = None
            return UpdateServiceSpec(False)

    def deprovision(self, instance_id, details, async_allowed, **kwargs):
        with self._lock:
            inst = self._instances.get(instance_id)
            if inst is None:
                raise errors.ErrInstanceDoesNotExist()
            self._check_ids(inst, details.service_id, details.plan_id, "deprovision")
            if async_allowed:
                inst.op = Operation("deprovision", operation_string("deprovision", instance_id), self._async_polls)
                return DeprovisionServiceSpec(True, operation=inst.op.operation)
            del self._instances[instance_id]
            return DeprovisionServiceSpec(False)

    def get_instance(self, instance_id, **kwargs):
        with self._lock:
            inst = self._instances.get(instance_id)
            if inst is None:
                raise errors.ErrInstanceDoesNotExist()
            return GetInstanceDetailsSpec(
                service_id=inst.service_id,
                plan_id=inst.plan_id,
                parameters=copy.deepcopy(inst.parameters),
            )

    def last_operation(self, instance_id, operation_data, service_id, plan_id, **kwargs):
        with self._lock:
            inst = self._instances.get(instance_id)
            if inst is None:
                raise errors.ErrInstanceDoesNotExist()  # openbrokerapi answers 410 Gone
            op = inst.op
            # OSB: after an update that changes the plan, the platform polls with the plan prior to
            # the update, so during an update either plan is right.
            previous_plan = getattr(op, "previous_plan_id", None) if op is not None else None
            self._check_ids(inst, service_id, None if plan_id == previous_plan else plan_id, "last_operation")
            if op is None:
                if operation_data is not None:
                    raise errors.ErrBadRequest(f"unknown operation {operation_data!r}: no async operation running")
                return LastOperation(OperationState.SUCCEEDED, "succeeded")
            if operation_data != op.operation:
                raise errors.ErrBadRequest(f"operation {operation_data!r} does not match {op.operation!r}")
            if op.state == OperationState.IN_PROGRESS:
                if op.polls_left > 0:
                    op.polls_left -= 1
                    return LastOperation(OperationState.IN_PROGRESS, f"{op.kind} in progress")
                op.state = OperationState.SUCCEEDED
                if op.kind == "deprovision":
                    del self._instances[instance_id]
            return LastOperation(op.state, f"{op.kind} succeeded")

    # -- bindings ------------------------------------------------------------------------

    def bind(self, instance_id, binding_id, details, async_allowed, **kwargs):
        params = _params(details.parameters)
        bind_resource = _bind_resource_dict(details.bind_resource)
        with self._lock:
            inst = self._instances.get(instance_id)
            if inst is None:
                raise errors.ErrBadRequest(f"instance {instance_id!r} does not exist")
            self._check_ids(inst, details.service_id, details.plan_id, "bind")
            existing = inst.bindings.get(binding_id)
            if existing is not None:
                identical = (
                    existing.parameters == params
                    and existing.bind_resource == bind_resource
                    and existing.app_guid == details.app_guid
                )
                if not identical:
                    raise errors.ErrBindingAlreadyExists()
                return Binding(BindState.IDENTICAL_ALREADY_EXISTS, credentials=copy.deepcopy(existing.credentials))
            credentials = {
                "uri": f"fake://{binding_id}",
                "username": f"u-{binding_id}",
                "password": f"p-{binding_id}",
            }
            inst.bindings[binding_id] = BindingRecord(
                details.service_id, details.plan_id, params, bind_resource, details.app_guid, credentials
            )
            return Binding(BindState.SUCCESSFUL_BOUND, credentials=copy.deepcopy(credentials))

    def unbind(self, instance_id, binding_id, details, async_allowed, **kwargs):
        with self._lock:
            inst = self._instances.get(instance_id)
            if inst is None or binding_id not in inst.bindings:
                raise errors.ErrBindingDoesNotExist()  # openbrokerapi answers 410 Gone
            self._check_ids(inst, details.service_id, details.plan_id, "unbind")
            del inst.bindings[binding_id]
            return UnbindSpec(False)

    def get_binding(self, instance_id, binding_id, **kwargs):
        with self._lock:
            inst = self._instances.get(instance_id)
            b = inst.bindings.get(binding_id) if inst is not None else None
            if b is None:
                raise errors.ErrBindingDoesNotExist()  # openbrokerapi answers 404
            return GetBindingSpec(credentials=copy.deepcopy(b.credentials), parameters=copy.deepcopy(b.parameters))

    def last_binding_operation(self, instance_id, binding_id, operation_data, service_id, plan_id, **kwargs):
        with self._lock:
            inst = self._instances.get(instance_id)
            if inst is None or binding_id not in inst.bindings:
                # openbrokerapi does not catch this here; the handler below turns it into 410
                raise errors.ErrBindingDoesNotExist()
            return LastOperation(OperationState.SUCCEEDED, "succeeded")


class _ExpectedErrorFilter(logging.Filter):
    """openbrokerapi logs every 4xx it maps (409, 410, 400, ...) with a traceback via
    logger.exception; drop those so stderr shows only real failures (500s)."""

    EXPECTED = (errors.ServiceException, TypeError, KeyError, JSONDecodeError)
    # openbrokerapi's catch-all handlers (500, 501) log from these functions: always keep those
    ALWAYS_KEEP = ("error_handler", "error_handler_not_implemented")

    def filter(self, record):
        if record.funcName in self.ALWAYS_KEEP:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, self.EXPECTED)


def _json_body():
    """The request body parsed as JSON whatever its Content-Type; None when empty or not JSON.

    Reads the raw bytes with the cache on, and does not call request.get_json: Werkzeug caches
    get_json's result before checking the Content-Type, so a forced parse here would make
    openbrokerapi accept bodies that are not application/json.
    """
    raw = request.get_data(cache=True)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def create_app(broker, username, password, verbose=False):
    api_logger = logging.getLogger("obapi_broker.openbrokerapi")
    if not verbose:
        api_logger.addFilter(_ExpectedErrorFilter())

    blueprint = api.get_blueprint(broker, BrokerCredentials(username, password), api_logger)

    # openbrokerapi leaves ErrBindingDoesNotExist from last_binding_operation to its generic
    # Exception handler (500); answer 410 Gone as the spec asks. Blueprint handlers are looked up
    # by the exception's class hierarchy first, so this one wins over the catch-all.
    @blueprint.errorhandler(errors.ErrBindingDoesNotExist)
    def _binding_gone(e):
        return to_json_response(EmptyResponse()), 410

    app = Flask("obapi_broker")

    recorded = []
    recorded_lock = threading.Lock()

    # App-level before_request runs before the blueprint's filters (version, auth), so requests
    # that those refuse are recorded too.
    @app.before_request
    def _record():
        if request.path == "/__recorded":
            return None
        entry = {
            "method": request.method,
            "path": request.path,
            "query_string": request.query_string.decode("latin-1"),
            "args": request.args.to_dict(flat=True),
            "body": _json_body(),
            "headers": {h: request.headers.get(h) for h in RECORDED_HEADERS},
            "status": None,
        }
        g.recorded_entry = entry
        with recorded_lock:
            recorded.append(entry)
        return None

    @app.after_request
    def _record_status(response):
        entry = g.get("recorded_entry")
        if entry is not None:
            with recorded_lock:
                entry["status"] = response.status_code
        return response

    @app.route("/__recorded", methods=["GET", "DELETE"])
    def _recorded():
        with recorded_lock:
            if request.method == "DELETE":
                n = len(recorded)
                recorded.clear()
                return jsonify({"cleared": n})
            return jsonify(copy.deepcopy(recorded))

    app.register_blueprint(blueprint)
    return app


def parse_args(argv):
    p = argparse.ArgumentParser(description="Fake upstream OSB broker on openbrokerapi, for the gateway's tests.")
    p.add_argument("--catalog", required=True, help='JSON file {"services": [...]} to serve at /v2/catalog')
    p.add_argument("--username", required=True, help="basic auth username")
    p.add_argument("--password", required=True, help="basic auth password")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = any free port (default)")
    p.add_argument(
        "--async-polls",
        type=int,
        default=1,
        help='last_operation answers "in progress" this many times before "succeeded" (default 1)',
    )
    p.add_argument(
        "--require-org-space",
        action="store_true",
        help="keep openbrokerapi's check that provision carries organization_guid and space_guid "
        "(off by default: OSB 2.17 platforms such as Kubernetes send neither)",
    )
    p.add_argument("--tls-cert", help="serve https with this PEM certificate (chain)")
    p.add_argument("--tls-key", help="the PEM private key of --tls-cert")
    p.add_argument("--tls-client-ca", help="require a client certificate signed by a CA in this PEM file")
    p.add_argument("--verbose", "-v", action="store_true", help="log requests and handled errors to stderr")
    args = p.parse_args(argv)
    if args.async_polls < 0:
        p.error("--async-polls must be >= 0")
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        p.error("--tls-client-ca needs --tls-cert")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)

    openbrokerapi.settings.DISABLE_SPACE_ORG_GUID_CHECK = not args.require_org_space

    try:
        services = load_catalog(args.catalog)
    except (OSError, ValueError) as e:
        print(f"obapi_broker: cannot load catalog: {e}", file=sys.stderr)
        return 2

    broker = InMemoryBroker(services, args.async_polls)
    app = create_app(broker, args.username, args.password, verbose=args.verbose)

    ssl_context = None
    if args.tls_cert:
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_client_ca:
            ssl_context.verify_mode = ssl.CERT_REQUIRED
            ssl_context.load_verify_locations(args.tls_client_ca)
    server = make_server(args.host, args.port, app, threaded=True, ssl_context=ssl_context)

    def _stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    sys.stdout.write(f"LISTENING {server.server_port}\n")
    sys.stdout.flush()
    LOG.info("serving %d services from %s on %s:%d", len(services), args.catalog, args.host, server.server_port)
    try:
        server.serve_forever()
    except SystemExit:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
