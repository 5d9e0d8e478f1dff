"""The control plane's REST API (/api/v1) through FastAPI's TestClient, on SQLite and PostgreSQL: CRUD,
the route x role matrix derived from auth.ACTIONS, 401s, idempotency replay, ETag / If-Match,
problem+json, and malformed bodies answering 4xx, never 500. sbatch is a recording fake
(tests/unit/controlplane/test_submit.py's); the real submission is tested on the dev cluster there."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from slurmctl.controlplane.auth import ACTIONS, ANY, Scope, create_token
from slurmctl.controlplane.domain import Job, JobKind, ResearchProject
from slurmctl.controlplane.repo import Actor, Repository
from slurmctl.controlplane.submit import Submitter
from slurmctl.storage.open import open_backend
from tests.unit.controlplane.test_submit import FakeSlurm

ACTOR = Actor("root", "test")
SCRIPT = "#!/bin/sh\ntrue\n"
# Who holds which role on every project the tests make; root is the site admin.
ROLES = {"root": "admin", "alice": "owner", "bob": "member", "carol": "viewer", "dave": "none"}


class Env:
    def __init__(self, repo: Repository, client: TestClient, fake: FakeSlurm) -> None:
        self.repo, self.client, self.fake = repo, client, fake
        self.tokens = {
            user: create_token(repo, user=user, name="t", scope=Scope.ADMIN, days=1, actor=ACTOR).secret
            for user in ROLES
        }

    def h(self, user: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}", **extra}

    def project(self, name: str) -> ResearchProject:
        p = ResearchProject.build(name=name, pi="alice", members={"bob": "member", "carol": "viewer"})
        self.repo.create_project(p, ACTOR)
        return p

    def job(self, project: str, by: str = "bob") -> Job:
        job = Job.build(
            id=f"j-{project}", kind=JobKind.SBATCH, submitted_by=by, project=project, cluster="dev"
        )
        self.repo.create_job(job, ACTOR)
        return job


@pytest.fixture
def env(repo: Repository, tmp_path, monkeypatch) -> Any:
    from slurmctl.server.app import create_app

    monkeypatch.setenv("SLURMCTL_AUDIT_JSONL", "")
    fake = FakeSlurm()
    url = repo.engine.url.render_as_string(hide_password=False)
    app = create_app(
        open_backend({"kind": "local", "root": str(tmp_path / "root")}),
        database=url,
        submitter=Submitter(repo, fake, cluster="dev", grace=timedelta(0)),
        admins=frozenset({"root"}),
    )
    with TestClient(app) as client:
        e = Env(repo, client, fake)
        e.app = app
        yield e


def _problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert set(body) == {"type", "title", "status", "detail"} and body["status"] == status
    return body


# --- route x role --------------------------------------------------------------------------------

# (method, path, action, json body, owner of the object); {p} is a fresh project per case.
ALLOC = {
    "cluster": "dev",
    "cpu_hours": 10,
    "period_start": "2027-01-01T00:00:00Z",
    "period_end": "2028-01-01T00:00:00Z",
}
MATRIX = [
    ("GET", "/api/v1/projects", "project.list", None),
    ("POST", "/api/v1/projects", "project.create", {"name": "{p}", "pi": "alice"}),
    ("GET", "/api/v1/projects/{p}", "project.read", None),
    ("PATCH", "/api/v1/projects/{p}", "project.update", {"title": "new"}),
    ("DELETE", "/api/v1/projects/{p}", "project.delete", None),
    ("PUT", "/api/v1/projects/{p}/members/erin", "project.member.add", {"role": "viewer"}),
    ("DELETE", "/api/v1/projects/{p}/members/bob", "project.member.remove", None),
    ("POST", "/api/v1/projects/{p}/allocations", "project.allocate", ALLOC),
    ("POST", "/api/v1/jobs", "job.submit", {"project": "{p}", "script": SCRIPT}),
    ("GET", "/api/v1/jobs?project={p}", "job.list", None),
    ("GET", "/api/v1/jobs/j-{p}", "job.read", None),
]


def _allowed(user: str, action: str, owner: str | None) -> bool:
    """What auth.ACTIONS says (every token here has scope admin)."""
    rule, role = ACTIONS[action], ROLES[user]
    if role == "admin" or ANY in rule.roles or role in rule.roles:
        return True
    return owner == user and (ANY in rule.own or role in rule.own)


def _fill(value: Any, p: str) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, p) for k, v in value.items()}
    return value.replace("{p}", p) if isinstance(value, str) else value


def test_every_api_route_is_in_the_matrix(env: Env):
    paths = env.client.get("/api/openapi.json").json()["paths"]
    routes = {(m.upper(), p) for p, ops in paths.items() if p.startswith("/api/v1") for m in ops}
    generic = {"{p}": "{name}", "j-{name}": "{job_id}", "/erin": "/{user}", "/bob": "/{user}"}
    listed = set()
    for method, path, _, _ in MATRIX:
        path = path.split("?")[0]
        for concrete, template in generic.items():
            path = path.replace(concrete, template)
        listed.add((method, path))
    assert routes == listed


def test_route_role_matrix(env: Env):
    wrong = []
    for i, (method, path, action, body) in enumerate(MATRIX):
        for user in ROLES:
            p = f"m{i}-{user}"
            if action != "project.create":
                env.project(p)
            owner = None
            if action == "job.read":
                owner = env.job(p).submitted_by
            r = env.client.request(
                method, _fill(path, p), json=_fill(body, p), headers=env.h(user, **{"If-Match": '"1"'})
            )
            expect = _allowed(user, action, owner)
            ok = 200 <= r.status_code < 300 if expect else r.status_code == 403
            if not ok:
                wrong.append(f"{method} {path} as {user} ({ROLES[user]}): {r.status_code} {r.text[:120]}")
    assert wrong == []


def test_cancel_own_job_rule_is_not_routed_yet():
    # job.cancel's "own" rule has no route: the matrix above covers every route there is.
    assert "job.cancel" in ACTIONS and all(a != "job.cancel" for _, _, a, _ in MATRIX)


def test_listing_shows_the_callers_projects_and_read_scope_cannot_write(env: Env):
    env.project("lab")
    env.repo.create_project(ResearchProject.build(name="other", pi="dave"), ACTOR)

    def names(user: str) -> list[str]:
        r = env.client.get("/api/v1/projects", headers=env.h(user))
        return [p["name"] for p in r.json()["items"]]

    assert names("carol") == ["lab"] and names("dave") == ["other"] and names("root") == ["lab", "other"]
    read = create_token(env.repo, user="alice", name="r", scope=Scope.READ, days=1, actor=ACTOR).secret
    headers = {"Authorization": f"Bearer {read}", "If-Match": '"1"'}
    r = env.client.patch("/api/v1/projects/lab", json={"title": "x"}, headers=headers)
    assert "scope write" in _problem(r, 403)["detail"]


# --- authentication -------------------------------------------------------------------------------


def test_missing_malformed_expired_and_revoked_tokens_are_401(env: Env):
    from slurmctl.controlplane.auth import _hash
    from slurmctl.controlplane.domain import ApiToken, utcnow

    env.project("lab")
    past = utcnow() - timedelta(days=2)
    secret = "s" * 43
    env.repo.create_token(
        ApiToken.build(
            id="0123456789ab",
            user="alice",
            scope="admin",
            secret_sha256=_hash(secret),
            created_at=past,
            expires_at=past + timedelta(days=1),
        ),
        ACTOR,
    )
    revoked = create_token(env.repo, user="alice", name="x", scope=Scope.ADMIN, days=1, actor=ACTOR)
    env.repo.revoke_token(revoked.token.id, ACTOR)
    cases = {
        "missing": {},
        "malformed": {"Authorization": "Bearer nope"},
        "basic": {"Authorization": "Basic YWxpY2U6eA=="},
        "expired": {"Authorization": f"Bearer sct_0123456789ab_{secret}"},
        "revoked": {"Authorization": f"Bearer {revoked.secret}"},
    }
    for name, headers in cases.items():
        for method, path in (("GET", "/api/v1/projects/lab"), ("POST", "/api/v1/jobs")):
            r = env.client.request(method, path, headers=headers, json={"project": "lab", "script": SCRIPT})
            body = _problem(r, 401)
            assert r.headers["www-authenticate"] == "Bearer", name
            assert secret not in body["detail"] and revoked.secret not in body["detail"]
    assert (
        "expired" in _problem(env.client.get("/api/v1/projects/lab", headers=cases["expired"]), 401)["detail"]
    )
    assert (
        "revoked" in _problem(env.client.get("/api/v1/projects/lab", headers=cases["revoked"]), 401)["detail"]
    )


# --- CRUD, ETag / If-Match -----------------------------------------------------------------------


def test_project_crud_with_etags(env: Env):
    c, root = env.client, env.h("root")
    r = c.post("/api/v1/projects", json={"name": "lab", "pi": "alice", "title": "Lab"}, headers=root)
    assert (
        r.status_code == 201
        and r.headers["etag"] == '"1"'
        and r.headers["location"] == "/api/v1/projects/lab"
    )
    assert r.json()["members"] == {"alice": "owner"} and r.json()["slurm_account"] == "lab"
    r = c.put("/api/v1/projects/lab/members/bob", json={"role": "member"}, headers=env.h("alice"))
    assert r.status_code == 200 and r.headers["etag"] == '"2"' and r.json()["members"]["bob"] == "member"
    r = c.post("/api/v1/projects/lab/allocations", json=ALLOC, headers=root)
    assert r.status_code == 201 and r.json()["allocations"][0]["cpu_hours"] == 10
    r = c.patch("/api/v1/projects/lab", json={"title": "Chem"}, headers=env.h("alice", **{"If-Match": '"3"'}))
    assert r.status_code == 200 and r.json()["title"] == "Chem" and r.headers["etag"] == '"4"'
    got = c.get("/api/v1/projects/lab", headers=env.h("bob"))
    assert got.json()["title"] == "Chem" and got.json()["version"] == 4 and got.headers["etag"] == '"4"'
    r = c.delete("/api/v1/projects/lab/members/bob", headers=env.h("alice"))
    assert "bob" not in r.json()["members"]
    _problem(c.delete("/api/v1/projects/lab/members/alice", headers=env.h("alice")), 422)  # the PI
    _problem(c.delete("/api/v1/projects/lab", headers=root), 428)
    _problem(c.delete("/api/v1/projects/lab", headers=env.h("root", **{"If-Match": '"4"'})), 412)
    assert c.delete("/api/v1/projects/lab", headers=env.h("root", **{"If-Match": '"5"'})).status_code == 204
    _problem(c.get("/api/v1/projects/lab", headers=root), 404)
    assert [e.action for e in env.repo.audit(entity_key="project/lab")] == [
        "project.create",
        "project.member.add",
        "project.allocate",
        "project.update",
        "project.member.remove",
        "project.delete",
    ]
    assert {e.source for e in env.repo.audit(entity_key="project/lab")} == {"api testclient"}


def test_stale_if_match_is_412_and_changes_nothing(env: Env):
    env.project("lab")
    c = env.client
    assert (
        c.patch(
            "/api/v1/projects/lab", json={"title": "a"}, headers=env.h("alice", **{"If-Match": '"1"'})
        ).status_code
        == 200
    )
    r = c.patch("/api/v1/projects/lab", json={"title": "b"}, headers=env.h("alice", **{"If-Match": '"1"'}))
    assert "does not match" in _problem(r, 412)["detail"]
    r = c.put("/api/v1/projects/lab/members/erin", json={}, headers=env.h("alice", **{"If-Match": 'W/"1"'}))
    _problem(r, 412)
    _problem(c.patch("/api/v1/projects/lab", json={"title": "b"}, headers=env.h("alice")), 428)
    assert (
        env.repo.get_project("lab").entity.title == "a"
        and "erin" not in env.repo.get_project("lab").entity.members
    )


# --- jobs and idempotency -----------------------------------------------------------------------


def test_submit_list_get_and_idempotent_replay(env: Env):
    env.project("lab")
    c = env.client
    body = {"project": "lab", "script": SCRIPT}
    first = c.post("/api/v1/jobs", json=body, headers=env.h("bob", **{"Idempotency-Key": "k1"}))
    assert first.status_code == 201 and first.json()["state"] == "submitted", first.text
    assert first.json()["slurm_job_ids"] == ["101"] and "script" not in first.json()
    again = c.post("/api/v1/jobs", json=body, headers=env.h("bob", **{"Idempotency-Key": "k1"}))
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert [name for name, _ in env.fake.calls] == ["sbatch"]  # exactly one sbatch
    other = c.post(
        "/api/v1/jobs",
        json={**body, "script": "#!/bin/sh\nfalse\n"},
        headers=env.h("bob", **{"Idempotency-Key": "k1"}),
    )
    assert "another request" in _problem(other, 422)["detail"]
    for _ in range(4):
        assert c.post("/api/v1/jobs", json=body, headers=env.h("alice")).status_code == 201
    ids: list[str] = []
    cursor = ""
    while True:
        page = c.get(f"/api/v1/jobs?project=lab&limit=2&cursor={cursor}", headers=env.h("carol")).json()
        ids += [j["id"] for j in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert len(ids) == 5 and ids == sorted(ids)
    assert c.get("/api/v1/jobs?project=lab&state=accepted", headers=env.h("carol")).json()["items"] == []
    got = c.get(f"/api/v1/jobs/{first.json()['id']}", headers=env.h("carol"))
    assert got.json()["submitted_by"] == "bob" and got.headers["etag"] == f'"{first.json()["version"]}"'
    _problem(c.get("/api/v1/jobs", headers=env.h("bob")), 403)  # non-admins name a project
    _problem(c.get("/api/v1/jobs/nope", headers=env.h("root")), 404)


def test_project_create_replays_with_its_key_and_conflicts_without(env: Env):
    c, body = env.client, {"name": "lab", "pi": "alice"}
    first = c.post("/api/v1/projects", json=body, headers=env.h("root", **{"Idempotency-Key": "p"}))
    again = c.post("/api/v1/projects", json=body, headers=env.h("root", **{"Idempotency-Key": "p"}))
    assert first.status_code == again.status_code == 201 and again.json() == first.json()
    assert again.headers["etag"] == '"1"'
    _problem(c.post("/api/v1/projects", json=body, headers=env.h("root")), 409)
    _problem(
        c.post(
            "/api/v1/projects", json={**body, "title": "x"}, headers=env.h("root", **{"Idempotency-Key": "p"})
        ),
        422,
    )
    _problem(c.post("/api/v1/projects", json=body, headers=env.h("root", **{"Idempotency-Key": ""})), 400)


def test_transient_sbatch_failure_answers_202_accepted(env: Env):
    from slurmctl.errors import SubmissionError

    env.project("lab")
    env.fake.fail = SubmissionError("sbatch: timeout", returncode=None)
    r = env.client.post("/api/v1/jobs", json={"project": "lab", "script": SCRIPT}, headers=env.h("bob"))
    assert r.status_code == 202 and r.json()["state"] == "accepted"


# --- malformed input ----------------------------------------------------------------------------


BAD = [
    ("POST", "/api/v1/projects", b"{not json"),
    ("POST", "/api/v1/projects", b"[]"),
    ("POST", "/api/v1/projects", b'{"name": "Bad Name", "pi": "alice"}'),
    ("POST", "/api/v1/projects", b'{"name": "x", "pi": "alice", "members": {"bob": "admin"}}'),
    ("POST", "/api/v1/projects", b'{"name": "x", "pi": "alice", "extra": 1}'),
    ("POST", "/api/v1/projects", b'{"name": "' + b"a" * 5000 + b'", "pi": "alice"}'),
    (
        "POST",
        "/api/v1/projects/lab/allocations",
        b'{"cluster": "dev", "period_start": "2027", "period_end": "x"}',
    ),
    (
        "POST",
        "/api/v1/projects/lab/allocations",
        b'{"cluster": "dev", "cpu_hours": 1, "period_start": "2027-01-01T00:00:00",'
        b' "period_end": "2028-01-01T00:00:00"}',
    ),
    (
        "POST",
        "/api/v1/projects/lab/allocations",
        b'{"cluster": "dev", "cpu_hours": "NaN", "period_start": "2027-01-01T00:00:00Z",'
        b' "period_end": "2028-01-01T00:00:00Z"}',
    ),
    ("PUT", "/api/v1/projects/lab/members/Not%20A%20User", b'{"role": "member"}'),
    ("PUT", "/api/v1/projects/lab/members/bob", b'{"role": "god"}'),
    ("PATCH", "/api/v1/projects/lab", b'{"pi": "nobody!"}'),
    ("PATCH", "/api/v1/projects/lab", b'{"parent_account": "lab"}'),
    ("POST", "/api/v1/jobs", b'{"project": "lab", "script": ""}'),
    ("POST", "/api/v1/jobs", b'{"project": "NOPE", "script": "x"}'),
    ("GET", "/api/v1/jobs?project=lab&limit=0", None),
    ("GET", "/api/v1/jobs?project=lab&state=bogus", None),
    ("GET", "/api/v1/jobs/%00", None),
    ("GET", "/api/v1/jobs?project=lab&cursor=%00", None),
    ("PATCH", "/api/v1/projects/lab", b'{"title": "a\\u0000b"}'),
    ("POST", "/api/v1/jobs", b'{"project": "lab", "script": "#!/bin/sh\\u0000"}'),
    ("GET", "/api/v1/nowhere", None),
]


@pytest.mark.parametrize(("method", "path", "data"), BAD, ids=[f"{m} {p} {d!r:.40}" for m, p, d in BAD])
def test_malformed_requests_are_problems_not_500(env: Env, method, path, data):
    env.project("lab")
    headers = env.h("root", **{"Content-Type": "application/json", "If-Match": "*"})
    r = env.client.request(method, path, content=data, headers=headers)
    assert 400 <= r.status_code < 500, r.text
    _problem(r, r.status_code)


def test_openapi_document_is_served(env: Env):
    doc = env.client.get("/api/openapi.json").json()
    assert {"/api/v1/projects", "/api/v1/projects/{name}", "/api/v1/jobs", "/api/v1/jobs/{job_id}"} <= set(
        doc["paths"]
    )
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert set(doc["components"]["schemas"]["Problem"]["properties"]) == {"type", "title", "status", "detail"}


def test_dashboard_errors_keep_their_shape(env: Env):
    r = env.client.get("/api/jobs/no-such-job")
    assert r.status_code == 404 and "error" in r.json()
