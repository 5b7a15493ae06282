"""`GET /v1/audit`: the newest audit of the registry's security posture."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from monitor.api.read import query_store, read_services
from monitor.errors import NotFound
from monitor.store.audit import latest_audit


async def audit(request: Request) -> Response:
    services = read_services(request)
    run = await query_store(services, latest_audit)
    if run is None:
        raise NotFound(
            "no audit has run yet: set audit.registry_config or audit.url, or wait for the "
            "first scheduled run"
        )
    return JSONResponse(run.to_dict())
