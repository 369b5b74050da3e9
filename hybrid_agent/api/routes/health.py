from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from hybrid_agent.bus.leases import redis_answers
from hybrid_agent.store import queries

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers. Needs no token."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "the store or the bus is not reachable"}})
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the store answers a query and the bus is connected (503 otherwise); and,
    where one is configured, whether Redis answers. The API does not need Redis, so without
    it the answer is 200 ``degraded``: workers cannot take resource leases, the triggers have
    no leader. Needs no token; says which part is down, nothing more."""
    checks = {"store": "ok", "bus": "ok"}
    try:
        async with request.app.state.sessions() as session:
            await queries.ping(session)
    except Exception:   # any failure to reach the database: not ready
        checks["store"] = "unreachable"
    if not request.app.state.bus.nc.is_connected:
        checks["bus"] = "disconnected"
    ready = all(value == "ok" for value in checks.values())
    redis_url = request.app.state.settings.redis_url
    if redis_url:
        checks["redis"] = "ok" if await redis_answers(redis_url) else "unreachable"
    status = "not ready" if not ready else "ready" if checks.get("redis", "ok") == "ok" else "degraded"
    return JSONResponse({"status": status, **checks}, status_code=200 if ready else 503)
