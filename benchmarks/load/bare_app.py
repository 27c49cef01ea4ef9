"""The ceiling for benchmarks/nasoa_service.py: a bare FastAPI POST endpoint (reads the body, answers a
constant), served by the same uvicorn settings as ``automl serve``."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()


@app.post("/v1/schedule")
async def schedule(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"ok": True})


@app.get("/health")
async def health() -> JSONResponse:
    return JSONResponse({"status": "ok"})
