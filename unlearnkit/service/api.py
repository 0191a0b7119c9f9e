"""The HTTP API (`unlearnkit serve-api`): submit and look up deletion requests, list model
versions, verify the audit chain, and the dashboard. Every endpoint needs a bearer token
(`unlearnkit ledger token create NAME`); the browser pages also take it once as `?token=`,
which sets a cookie for the links that follow."""

from __future__ import annotations

from fastapi import Depends, FastAPI, HTTPException, Request as HttpRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from unlearnkit.errors import UnlearnkitError
from unlearnkit.service.db import ModelVersion, Request
from unlearnkit.service.ledger import Ledger, overview, time_left


class NewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str | None = Field(None, description="the client's id: submitting it again is a no-op")
    subjects: list[str] = Field(default_factory=list)
    sample_ids: list[int] = Field(default_factory=list)


def request_json(request: Request) -> dict:
    left, overdue = time_left(request.deadline)
    return {"id": request.id, "status": request.status, "subjects": request.subjects, "images": len(request.sample_ids), "received": request.received,
            "deadline": request.deadline, "time_left": left, "overdue": overdue and request.status != "served", "action": request.action_id, "served": request.served}


def create_app(ledger: Ledger) -> FastAPI:
    app = FastAPI(title="unlearnkit deletion requests", docs_url=None, redoc_url=None)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, error: RequestValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
        return JSONResponse({"error": f"{where}: {first.get('msg')}"}, status_code=422)

    @app.exception_handler(UnlearnkitError)
    async def refused(_request, error: UnlearnkitError):
        message = str(error)
        return JSONResponse({"error": message}, status_code=409 if "already used" in message else 400)

    def caller(http: HttpRequest) -> str:
        header = http.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else http.query_params.get("token") or http.cookies.get("unlearnkit_token")
        name = ledger.authenticate(token)
        if name is None:
            raise HTTPException(401, "missing or wrong bearer token; create one with `unlearnkit ledger token create NAME`", headers={"WWW-Authenticate": "Bearer"})
        return f"api:{name}"

    @app.exception_handler(HTTPException)
    async def http_error(_request, error: HTTPException):
        return JSONResponse({"error": error.detail}, status_code=error.status_code, headers=error.headers)

    @app.post("/requests", status_code=201)
    def submit(body: NewRequest, actor: str = Depends(caller)):
        submitted = ledger.submit(actor, body.request_id, body.subjects, body.sample_ids)
        return JSONResponse(request_json(submitted.request) | {"created": submitted.created}, status_code=201 if submitted.created else 200)

    @app.get("/requests/{request_id}")
    def show(request_id: str, actor: str = Depends(caller)):
        with ledger.read() as session:
            found = session.get(Request, request_id)
            if found is None:
                raise HTTPException(404, f"request {request_id} is not in the ledger")
            return request_json(found)

    @app.get("/models")
    def models(actor: str = Depends(caller)):
        with ledger.read() as session:
            deployed = ledger.deployed(session)
            return [{"id": v.id, "kind": v.kind, "parent": v.parent_id, "method": v.method, "verdict": v.verdict, "sha256": v.sha256,
                     "train_count": v.train_count, "excluded_subjects": len(v.excluded_subjects), "deployed": deployed is not None and deployed.id == v.id,
                     "created": v.created} for v in session.query(ModelVersion).order_by(ModelVersion.id)]

    @app.get("/ledger/verify")
    def verify(actor: str = Depends(caller)):
        problems, head = ledger.verify()
        return {"ok": not problems, "problems": problems, "head": {"seq": head[0], "hash": head[1]}}

    @app.get("/", response_class=HTMLResponse)
    def dashboard(http: HttpRequest, actor: str = Depends(caller)):
        from unlearnkit.pages import dashboard as render

        response = HTMLResponse(render(overview(ledger)))
        if token := http.query_params.get("token"):
            response.set_cookie("unlearnkit_token", token, httponly=True, samesite="strict")
        return response

    @app.get("/reports/{path:path}")
    def report(path: str, actor: str = Depends(caller)):
        try:
            target = ledger.path(path)
        except UnlearnkitError as error:
            raise HTTPException(400, str(error)) from None
        if not path.startswith("actions/") or not target.is_file():
            raise HTTPException(404, f"no report {path} in the ledger")
        return FileResponse(target)

    return app
