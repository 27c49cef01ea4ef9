"""HTTP client of the schedule service (httpx): what ``automl zoo request|finetune`` and the
benchmark use. Errors come back as :class:`zoo.errors.ServiceError` carrying the server's message.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from zoo.card import MANIFEST, Manifest, ModelCard, Zoo, sha256, write_atomic
from zoo.errors import ServiceError
from zoo.schema import Decision, OutcomeReport, ScheduleRequest

DEFAULT_URL = "http://127.0.0.1:8000"


class ZooClient:
    """A connection to one service (reuses its HTTP connection; use as a context manager or close())."""

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def __enter__(self) -> ZooClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceError(f"cannot reach the schedule service at {self.url}: {exc}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
                message = body.get("error") or body.get("detail") or response.text
            except ValueError:
                message = response.text
            raise ServiceError(f"{self.url}{path}: HTTP {response.status_code}: {message}")
        return response

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = self._call("GET", "/health").json()
        return body

    def models(self) -> list[ModelCard]:
        return [ModelCard.model_validate(c) for c in self._call("GET", "/v1/zoo").json()]

    def schedule(self, request: ScheduleRequest) -> Decision:
        """Ask for the best schedule of a task within its time budget."""
        return Decision.model_validate(self._call("POST", "/v1/schedule", content=request.model_dump_json(),
                                                  headers={"content-type": "application/json"}).json())

    def report(self, outcome: OutcomeReport, refit: bool = False) -> dict[str, Any]:
        """Report what a schedule achieved; the service stores it and learns from it in the background
        (``refit=True``: the answer comes after the predictor has learned it, so the next request uses it)."""
        body: dict[str, Any] = self._call("POST", "/v1/outcomes", content=outcome.model_dump_json(exclude_none=True),
                                          headers={"content-type": "application/json"},
                                          params={"refit": "true"} if refit else None).json()
        return body

    def download_zoo(self, dest: Path) -> Zoo:
        """Copy the service's zoo (manifest, cards, weights; checksums verified) to ``dest`` and load it.
        Weights already there with the right checksum are not fetched again."""
        manifest = Manifest.model_validate(self._call("GET", "/v1/manifest").json())
        models = dest / "models"
        models.mkdir(parents=True, exist_ok=True)
        for card in self.models():
            weights = models / card.weights
            if not (weights.is_file() and sha256(weights) == card.weights_sha256):
                tmp = weights.with_suffix(".part")
                tmp.write_bytes(self._call("GET", f"/v1/zoo/{card.id}/weights").content)
                if sha256(tmp) != card.weights_sha256:
                    tmp.unlink()
                    raise ServiceError(f"weights of {card.id!r} from {self.url} fail their checksum")
                tmp.replace(weights)
            write_atomic(models / f"{card.id}.json", card.model_dump_json(indent=2))
        write_atomic(dest / MANIFEST, manifest.model_dump_json(indent=2))
        return Zoo.load(dest)
