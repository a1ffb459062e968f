"""The review pages and their JSON API (same app as the OpenAI routes).

Pages: /review (who you are, what there is, progress), /review/pairs (A / B / tie / skip), /review/expert
(rate, correct, explain). API under /review/api: GET next?kind=pair|sample&person=NAME, POST label, POST rate,
GET progress, GET config. Handlers are plain functions (FastAPI runs them in its thread pool), so a slow
SQLite write never holds up the event loop that streams generations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from llmforge.serve.errors import ApiError
from llmforge.serve.review.store import InvalidSubmission, ReviewStore

PAGES = ("review", "pairs", "expert")


@dataclass
class Review:
    store: ReviewStore
    rubric: str
    title: str = "llmforge review"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LabelBody(_Body):
    item: str = Field(min_length=1, max_length=64)
    labeller: str
    choice: Literal["a", "b", "tie", "skip"]
    reason: str = Field("", max_length=4000)
    left: Literal["a", "b"] = "a"


class RateBody(_Body):
    item: str = Field(min_length=1, max_length=64)
    reviewer: str
    rating: int
    correction: str = Field("", max_length=20000)
    reasoning: str = Field("", max_length=20000)


def install(app: Any, review: Review) -> None:
    """The review routes on `app`; a submission the store refuses is a 400 with its reason."""
    from fastapi.responses import JSONResponse

    @app.exception_handler(InvalidSubmission)
    async def _refused(_request, e: InvalidSubmission):
        return JSONResponse(ApiError(400, str(e), code="invalid_submission").body(), status_code=400)

    app.include_router(router(review))


def router(review: Review) -> APIRouter:
    from llmforge.serve.app import STATIC

    api = APIRouter()
    store = review.store

    @api.get("/review", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "review.html")

    @api.get("/review/pairs", include_in_schema=False)
    def pairs_page():
        return FileResponse(STATIC / "pairs.html")

    @api.get("/review/expert", include_in_schema=False)
    def expert_page():
        return FileResponse(STATIC / "expert.html")

    @api.get("/review/api/config")
    def config() -> dict:
        low, high = store.scale
        return {"title": review.title, "rubric": review.rubric, "scale": [low, high],
                "pairs": store.count("pair"), "samples": store.count("sample")}  # fmt: skip

    @api.get("/review/api/next")
    def next_item(kind: Literal["pair", "sample"], person: str) -> dict:
        return store.next_item(kind, person)

    @api.post("/review/api/label")
    def label(body: LabelBody) -> dict:
        return store.label(body.item, body.labeller, body.choice, body.reason, body.left)

    @api.post("/review/api/rate")
    def rate(body: RateBody) -> dict:
        return store.rate(body.item, body.reviewer, body.rating, body.correction, body.reasoning)

    @api.get("/review/api/progress")
    def progress() -> dict:
        return store.summary()

    return api
