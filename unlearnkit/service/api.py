"""The HTTP API (`unlearnkit serve-api`): submit and look up deletion requests, list model
versions, verify the audit chain, the dashboard and the batch reports.

Threat model (docs/service.md): every route, known or not, first needs a valid token in
`Authorization: Bearer …` (`unlearnkit ledger token create NAME --scope submit|read|admin`);
only then is a body read, and never more than `max_body` bytes. A `submit` token records
requests and sees only its own; `read` sees everything and changes nothing; `admin` does both.
The dashboard's cookie (set by `POST /session`) grants `read` only. Reports are served by action
id; no client-supplied path reaches the file system, so weights, sidecars and training ids are
never reachable. Every error is `{"error": "one line"}` quoting at most ~80 characters of input.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request as HttpRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from unlearnkit.errors import UnlearnkitError
from unlearnkit.service.db import Action, ModelVersion, Request, Token
from unlearnkit.service.ledger import Ledger, overview, quoted, time_left

MAX_BODY = 1 << 20  # bytes
COOKIE = "unlearnkit_token"
UNAUTHORIZED = "missing or wrong bearer token; send `Authorization: Bearer TOKEN` (create one with `unlearnkit ledger token create NAME --scope SCOPE`)"


class NewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    request_id: StrictStr | None = Field(None, max_length=200, description="the client's id: submitting it again is a no-op")
    subjects: list[StrictStr] = Field(default_factory=list, max_length=10_000)
    sample_ids: list[StrictInt] = Field(default_factory=list, max_length=100_000)


def request_json(request: Request) -> dict:
    left, overdue = time_left(request.deadline)
    return {"id": request.id, "status": request.status, "subjects": request.subjects, "images": len(request.sample_ids), "received": request.received,
            "deadline": request.deadline, "time_left": left, "overdue": overdue and request.status != "served", "action": request.action_id, "served": request.served,
            **({"error": request.error} if request.error else {})}


def error(status: int, message: str, **headers) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


class Gate:
    """ASGI middleware in front of every route: the token before anything else (from the header,
    or the dashboard's cookie with `read` scope only), then the body's size: the declared one,
    and the bytes as they arrive, whatever Content-Length says."""

    def __init__(self, app, ledger: Ledger, max_body: int):
        self.app, self.ledger, self.max_body = app, ledger, max_body

    def caller(self, http: HttpRequest) -> tuple[Token, str] | None:
        header = http.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            token = self.ledger.authenticate(header[7:].strip())
            return (token, token.scope or "admin") if token else None
        token = self.ledger.authenticate(http.cookies.get(COOKIE)) if COOKIE in http.cookies else None
        return (token, "read") if token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        http = HttpRequest(scope)
        try:
            caller = await run_in_threadpool(self.caller, http)
        except UnlearnkitError as problem:
            return await error(503, str(problem))(scope, receive, send)
        # the one route open without a token: the dashboard's login form posts one (checked there)
        if caller is None and not (http.url.path == "/session" and http.method == "POST"):
            return await error(401, UNAUTHORIZED, **{"WWW-Authenticate": "Bearer"})(scope, receive, send)
        declared = http.headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > self.max_body:
            return await error(413, f"the body is over {self.max_body} bytes; send at most that")(scope, receive, send)
        scope.setdefault("state", {})["caller"] = caller
        # the whole body, read here up to the limit (a chunked one declares no length), then
        # handed on: the app never sees more than max_body bytes
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                return await error(413, f"the body is over {self.max_body} bytes; send at most that")(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def create_app(ledger: Ledger, max_body: int = MAX_BODY) -> FastAPI:
    app = FastAPI(title="unlearnkit deletion requests", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(Gate, ledger=ledger, max_body=max_body)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, problem: RequestValidationError):
        first = problem.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
        return error(422, f"{quoted(where, 60).strip(chr(39))}: {first.get('msg')}")

    @app.exception_handler(UnlearnkitError)
    async def refused(_request, problem: UnlearnkitError):
        message = str(problem)
        return error(409 if "already used" in message else 400, message)

    framework_words = {"Not Found": "no such route; docs/service.md lists the endpoints", "Method Not Allowed": "this method is not allowed on this route"}

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, problem: StarletteHTTPException):
        return error(problem.status_code, framework_words.get(problem.detail, str(problem.detail)), **(problem.headers or {}))

    def allowed(http: HttpRequest, *scopes: str) -> Token:
        token, scope = http.scope["state"]["caller"]
        if scope not in scopes:
            raise HTTPException(403, f"this token's scope ({scope}) does not allow this; it needs {' or '.join(scopes)}")
        return token

    @app.post("/requests", status_code=201)
    def submit(body: NewRequest, http: HttpRequest):
        token = allowed(http, "submit", "admin")
        submitted = ledger.submit(f"api:{token.name}", body.request_id, body.subjects, body.sample_ids, submitter=f"token:{token.id}")
        return JSONResponse(request_json(submitted.request) | {"created": submitted.created}, status_code=201 if submitted.created else 200)

    @app.get("/requests/{request_id}")
    def show(request_id: str, http: HttpRequest):
        token = allowed(http, "submit", "read", "admin")
        _, scope = http.scope["state"]["caller"]
        with ledger.read() as session:
            found = session.get(Request, request_id[:200])
            if found is None or (scope == "submit" and found.submitted_by != f"token:{token.id}"):
                raise HTTPException(404, f"request {quoted(request_id)} is not in the ledger (or not yours)")
            return request_json(found)

    @app.get("/models")
    def models(http: HttpRequest):
        allowed(http, "read", "admin")
        with ledger.read() as session:
            deployed = ledger.deployed(session)
            return [{"id": v.id, "kind": v.kind, "parent": v.parent_id, "method": v.method, "verdict": v.verdict, "sha256": v.sha256,
                     "train_count": v.train_count, "excluded_subjects": len(v.excluded_subjects), "deployed": deployed is not None and deployed.id == v.id,
                     "created": v.created, "purged": v.purged} for v in session.query(ModelVersion).order_by(ModelVersion.id)]

    @app.get("/ledger/verify")
    def verify(http: HttpRequest):
        allowed(http, "read", "admin")
        problems, head = ledger.verify()
        return {"ok": not problems, "problems": problems, "head": {"seq": head[0], "hash": head[1]}}

    @app.get("/", response_class=HTMLResponse)
    def dashboard(http: HttpRequest):
        from unlearnkit.pages import dashboard as render

        allowed(http, "read", "admin")
        return HTMLResponse(render(overview(ledger)))

    @app.post("/session")
    async def session(http: HttpRequest):
        """The dashboard's cookie, from a form field `token` (a browser's login): it grants
        `read` only, whatever the token's scope, and is `Secure` over TLS."""
        presented = (parse_qs((await http.body()).decode("utf-8", "replace")).get("token") or [None])[0]  # a urlencoded form
        token = await run_in_threadpool(ledger.authenticate, presented)
        if token is None or (token.scope or "admin") not in ("read", "admin"):
            return error(401, UNAUTHORIZED, **{"WWW-Authenticate": "Bearer"})
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, presented, httponly=True, samesite="strict", secure=http.url.scheme == "https")
        return response

    @app.get("/actions/{action_id}/report.{kind}")
    def report(action_id: int, kind: str, http: HttpRequest):
        allowed(http, "read", "admin")
        if kind not in ("html", "json"):
            raise HTTPException(404, "a report is report.html or report.json")
        with ledger.read() as session:
            action = session.get(Action, action_id)
            relative = action.report_path if action is not None else None
        if relative is None:
            raise HTTPException(404, f"action {action_id} has no report")
        folder = ledger.path(f"actions/{action_id}")
        target = folder / f"report.{kind}"
        if relative != f"actions/{action_id}/report.html" or not target.is_file() or not target.resolve().is_relative_to(folder):
            raise HTTPException(404, f"the report of action {action_id} is missing from the ledger folder; `unlearnkit ledger verify` says more")
        return FileResponse(target, media_type="text/html" if kind == "html" else "application/json")

    return app
