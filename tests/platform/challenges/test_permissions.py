"""Permission matrix: every URL and API endpoint x every role x every kind of phase.

The world is built directly in the database (no worker): one public challenge with a phase
for each visibility (public, team, hidden unpublished, hidden published), each with per-case
results and logs shown or not; a private challenge; another organizer's challenge.
Expectations come from the written policy (`Policy` below), not from the code under test.
Besides status codes, every response body is searched for markers planted in results that
the role must not see (other teams' methods, per-case ids, subjects, logs, messages, the
private challenge's title), so a leak through any page, export or error message fails."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib import admin
from django.core.cache import cache
from django.test import Client
from django.urls import URLResolver, get_resolver, reverse
from django.utils import timezone

pytestmark = pytest.mark.django_db

ROLES = ["anon", "participant", "owner", "teammate", "organizer", "other_org", "staff"]
OWNER_SIDE = {"owner", "teammate"}
VIS = [("public", False), ("team", False), ("hidden", False), ("hidden", True)]


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()  # the file cache outlives test transactions (leaderboard fragments)
    yield
    cache.clear()


# --- the world ------------------------------------------------------------------------------


@dataclass
class PhaseWorld:
    phase: object
    tag: str
    own: object  # owner's ranked submission
    rival: object  # another team's ranked submission
    unranked: object  # the rival's submission that does not represent its team
    victim: object  # owner's submission used for mutating calls (rerun)


@dataclass
class World:
    users: dict
    pub: object
    priv: object
    other: object
    phases: list[PhaseWorld] = field(default_factory=list)
    task_pub: object = None
    task_priv: object = None
    other_phase: object = None  # target of organizer actions that change a phase


def _row(sub, rank: int, dsc: float) -> dict:
    return {
        "submission_id": sub.pk,
        "method": sub.method_name,
        "team": sub.owner_label,
        "label": f"{sub.owner_label} / {sub.method_name} (#{sub.pk})",
        "rank": rank,
        "tier": rank,
        "dsc": dsc,
        "dsc_ci": [dsc - 0.1, dsc + 0.1],
        "dsc_mean": dsc,
        "nsd": dsc,
        "nsd_ci": [dsc - 0.1, dsc + 0.1],
        "rank_interval": [rank, rank],
        "rank_median": rank,
        "scheme_ranks": {},
        "n_cases": 2,
        "n_failed": 1,
        "submitted": sub.created_at.isoformat(),
        "format": "onnx",
        "sha256": sub.sha256,
    }


def _submission(phase, user, team, method: str, tag: str, **kw):
    from submissions.models import CaseScore, Status, Submission

    sub = Submission.objects.create(
        phase=phase,
        user=user,
        team=team,
        method_name=method,
        model_path="/nonexistent/model.onnx",
        original_name="m.onnx",
        size_bytes=10,
        sha256="ab" * 32,
        model_format="onnx",
        status=Status.SUCCEEDED,
        progress_done=2,
        progress_total=2,
        log=f"LOG{tag}MARK",
        **kw,
    )
    for i, ok in enumerate([True, False]):
        CaseScore.objects.create(
            submission=sub,
            case_id=f"CASE{tag}ID{i}",
            subject=f"SUBJ{tag}Z",
            species="human",
            tissue_state="physiological",
            ok=ok,
            error="" if ok else f"CASEERR{tag}Z",
            dsc=0.31 + i / 10,
            nsd=0.5,
        )
    return sub


def build_world(tmp_path: Path) -> World:
    from accounts.models import User
    from challenges.models import Challenge, Dataset, Membership, Phase, Registration, Task, Team
    from leaderboards.models import RankingSnapshot
    from submissions.models import Message

    mk = User.objects.create_user
    users = {r: mk(r, password="pw", email=f"{r}@example.org") for r in ROLES if r != "anon"}
    users["staff"].is_staff = users["staff"].is_superuser = True
    users["staff"].save()
    rival = mk("rival", password="pw")
    users["anon"] = None

    pub = Challenge.objects.create(slug="pub", title="Public challenge", terms="t")
    priv = Challenge.objects.create(slug="priv", title="PRIVCHALLX", is_public=False, terms="t")
    other = Challenge.objects.create(slug="other", title="Other challenge")
    pub.organizers.add(users["organizer"])
    priv.organizers.add(users["organizer"])
    other.organizers.add(users["other_org"])

    data = tmp_path / "train"
    (data / "cubes").mkdir(parents=True)
    (data / "manifest.csv").write_text("image_name,species\nP1#a,pig\n")
    (data / "cubes" / "P1#a.bin").write_bytes(b"\x00" * 100)
    train = Dataset.objects.create(name="train", role="train", source_path=str(data))

    w = World(users=users, pub=pub, priv=priv, other=other)
    for ch, regs in ((pub, ["participant", "owner", "teammate"]), (priv, ["owner", "teammate"])):
        for r in regs:
            Registration.objects.create(challenge=ch, user=users[r])
        Registration.objects.create(challenge=ch, user=rival)
        t1 = Team.objects.create(challenge=ch, name=f"own team {ch.slug}")
        t2 = Team.objects.create(challenge=ch, name=f"rival team {ch.slug}")
        for u, t in ((users["owner"], t1), (users["teammate"], t1), (rival, t2)):
            Membership.objects.create(team=t, user=u, challenge=ch)
        task = Task.objects.create(
            challenge=ch, slug="organs", title="Organs", label_names=["a", "b"], train_dataset=train
        )
        if ch is pub:
            w.task_pub, kinds = (
                task,
                [(v, pubd, flags) for v, pubd in VIS for flags in (True, False)],
            )
        else:
            w.task_priv, kinds = task, [("public", False, True)]
        for vis, published, flags in kinds:
            slug = f"{vis}{'-pub' if published else ''}-{'on' if flags else 'off'}"
            phase = Phase.objects.create(
                task=task,
                slug=slug,
                title=slug,
                visibility=vis,
                published=published,
                show_case_results=flags,
                show_logs=flags,
                case_ids=["x"],
                opens_at=timezone.now() - timedelta(days=1),
            )
            tag = str(phase.pk)
            own = _submission(phase, users["owner"], t1, f"OWN{tag}X", tag)
            riv = _submission(phase, rival, t2, f"RIVAL{tag}X", tag + "R")
            unr = _submission(phase, rival, t2, f"UNRANKED{tag}X", tag + "U")
            vic = _submission(phase, users["owner"], t1, f"VICTIM{tag}X", tag + "V")
            RankingSnapshot.objects.create(
                phase=phase,
                version=1,
                submission_ids=[riv.pk, own.pk],
                rows=[_row(riv, 1, 0.9), _row(own, 2, 0.4)],
                changes=[f"new entry: {riv.owner_label} / {riv.method_name} (#{riv.pk}) at rank 1"],
                warnings=[f"note about RIVAL{tag}X"],
            )
            w.phases.append(PhaseWorld(phase, tag, own, riv, unr, vic))
    Message.objects.create(user=users["owner"], text="MSGOWNX")
    other_task = Task.objects.create(challenge=other, slug="organs", title="Organs")
    w.other_phase = Phase.objects.create(
        task=other_task, slug="hidden", title="hidden", visibility="hidden", case_ids=["x"]
    )
    return w


# --- the policy (what each role may see), written from the issue, not from the code ----------


class Policy:
    def __init__(self, w: World):
        self.w = w

    def org(self, r, ch) -> bool:
        return (
            r == "staff"
            or (r == "organizer" and ch.pk in (self.w.pub.pk, self.w.priv.pk))
            or (r == "other_org" and ch.pk == self.w.other.pk)
        )

    def registered(self, r, ch) -> bool:
        if ch.pk == self.w.pub.pk:
            return r in {"participant", "owner", "teammate"}
        if ch.pk == self.w.priv.pk:
            return r in OWNER_SIDE
        return False

    def sees(self, r, ch) -> bool:
        return ch.is_public or self.org(r, ch) or self.registered(r, ch)

    def full(self, r, p) -> bool:
        ch = p.task.challenge
        public = p.visibility == "public" or (p.visibility == "hidden" and p.published)
        return self.sees(r, ch) and (public or self.org(r, ch))

    def some_rows(self, r, p) -> bool:
        return self.full(r, p) or (
            p.visibility == "team" and r != "anon" and self.sees(r, p.task.challenge)
        )

    def team(self, r, sub) -> bool:
        return r in OWNER_SIDE and sub.user.username == "owner"

    def view_sub(self, r, sub) -> bool:
        return self.team(r, sub) or self.org(r, sub.phase.task.challenge)

    def scores(self, r, sub, ranked: bool) -> bool:
        p, ch = sub.phase, sub.phase.task.challenge
        if self.org(r, ch):
            return True
        if r in OWNER_SIDE and sub.user.username == "owner":
            return p.visibility != "hidden" or p.published
        return self.full(r, p) and ranked

    def cases(self, r, sub) -> bool:
        ch = sub.phase.task.challenge
        return self.org(r, ch) or (
            r in OWNER_SIDE
            and sub.user.username == "owner"
            and sub.phase.show_case_results
            and self.scores(r, sub, True)
        )

    def logs(self, r, sub) -> bool:
        ch = sub.phase.task.challenge
        return self.org(r, ch) or (
            r in OWNER_SIDE and sub.user.username == "owner" and sub.phase.participants_see_logs
        )

    def markers(self, r) -> dict[str, bool]:
        """Every planted secret -> whether role r may see it anywhere."""
        out = {"PRIVCHALLX": self.sees(r, self.w.priv), "MSGOWNX": r == "owner"}
        for pw in self.w.phases:
            t, p = pw.tag, pw.phase
            own_rows = p.visibility == "team" and r in OWNER_SIDE
            out[f"OWN{t}X"] = self.view_sub(r, pw.own) or self.full(r, p) or own_rows
            out[f"RIVAL{t}X"] = self.full(r, p)
            out[f"UNRANKED{t}X"] = self.org(r, p.task.challenge)
            out[f"VICTIM{t}X"] = self.view_sub(r, pw.victim)
            for suffix, sub in (
                ("", pw.own),
                ("R", pw.rival),
                ("U", pw.unranked),
                ("V", pw.victim),
            ):
                out[f"CASE{t}{suffix}ID"] = out[f"CASEERR{t}{suffix}Z"] = self.cases(r, sub)
                out[f"SUBJ{t}{suffix}Z"] = self.cases(r, sub)
                out[f"LOG{t}{suffix}MARK"] = self.logs(r, sub)
        return out


# --- the checks -----------------------------------------------------------------------------

Expect = Callable[[str], set[int]]


@dataclass
class Check:
    name: str  # URL name (what the coverage test counts)
    url: str
    expect: Expect
    method: str = "get"
    data: dict | None = None
    extra: Callable[[str, object], str | None] | None = None  # (role, response) -> problem


def login_or(r: str, code: set[int], anon: int = 302) -> set[int]:
    return {anon} if r == "anon" else code


def healthz_details(r: str, resp) -> str | None:
    """Worker host names, versions and errors are for staff; everyone else gets {"ok": ...}."""
    body = resp.json()
    if body.get("ok") is not (resp.status_code == 200):
        return f"ok={body.get('ok')} with status {resp.status_code}"
    if (set(body) != {"ok"}) != (r == "staff"):
        return f"details shown to {r}: {sorted(body)}"
    return None


def build_checks(w: World, pol: Policy) -> list[Check]:
    C = Check
    ok = {200}
    checks = [
        C("home", "/", lambda r: ok),
        C("healthz", "/healthz", lambda r: {200, 503}, extra=healthz_details),
        C("healthz", "/healthz?scope=web", lambda r: {200, 503}, extra=healthz_details),
        C("login", "/accounts/login/", lambda r: ok),
        C("signup", "/accounts/signup/", lambda r: ok),
        C("my-submissions", "/submissions/", lambda r: login_or(r, ok)),
        C("inbox", "/inbox/", lambda r: login_or(r, ok)),
        C("api-root", "/api/", lambda r: ok),
        C("api-schema", "/api/schema/", lambda r: ok),
        C("api-docs", "/api/docs/", lambda r: ok),
        C("api-redoc", "/api/redoc/", lambda r: ok),
        C("api-token", "/api/token/", lambda r: {400}, "post", {"username": "x", "password": "y"}),
        C("api-challenge-list", "/api/challenges/", lambda r: ok),
        C("api-phase-list", "/api/phases/", lambda r: ok),
        C("api-submission-list", "/api/submissions/", lambda r: login_or(r, ok, 401)),
        C("api-invitation-list", "/api/invitations/", lambda r: login_or(r, ok, 401)),
        C(
            "api-invitation-accept",
            "/api/invitations/999/accept/",
            lambda r: login_or(r, {404}, 401),
            "post",
        ),
        C(
            "api-invitation-decline",
            "/api/invitations/999/decline/",
            lambda r: login_or(r, {404}, 401),
            "post",
        ),
        C(
            "api-invitation-cancel",
            "/api/invitations/999/cancel/",
            lambda r: login_or(r, {404}, 401),
            "post",
        ),
        C("api-submission-list", "/api/submissions/?phase=abc", lambda r: login_or(r, {400}, 401)),
    ]
    for ch in (w.pub, w.priv, w.other):
        s = ch.slug
        vis = lambda r, ch=ch: ok if pol.sees(r, ch) else {404}  # noqa: E731
        vis_post = lambda r, ch=ch: login_or(r, {302} if pol.sees(r, ch) else {404})  # noqa: E731
        checks += [
            C("challenge-detail", f"/c/{s}/", vis),
            C("challenge-report", f"/c/{s}/report/", vis),
            C(
                "challenge-report",
                f"/c/{s}/report/?download=pdf",
                lambda r, ch=ch: {202} if pol.sees(r, ch) else {404},
            ),
            C("challenge-report-pdf", f"/c/{s}/report/pdf.json", vis),
            C("api-challenge-detail", f"/api/challenges/{s}/", vis),
            C("api-challenge-detail", f"/api/challenges/{s}.json", vis),
            C("challenge-join", f"/c/{s}/join", vis_post, "post", {}),
            C("challenge-team", f"/c/{s}/team", vis_post, "post", {"action": "noop"}),
            C("challenge-team", f"/c/{s}/team", lambda r, v=vis: login_or(r, v(r))),
            C(
                "api-challenge-team",
                f"/api/challenges/{s}/team/",
                lambda r, v=vis: {401} if r == "anon" else v(r),
            ),
        ]
    for ch, task in ((w.pub, w.task_pub), (w.priv, w.task_priv)):
        base = f"/c/{ch.slug}/{task.slug}/"

        def data(r, ch=ch):
            if not pol.sees(r, ch):
                return login_or(r, {404})
            return login_or(r, ok if pol.registered(r, ch) or pol.org(r, ch) else {403})

        checks += [
            C("task-detail", base, lambda r, ch=ch: ok if pol.sees(r, ch) else {404}),
            C("task-data", base + "data.json", data),
            C("task-data-sums", base + "SHA256SUMS", data),
            C("task-data-archive", base + "training.tar", data),
            C("task-data-file", base + "files/manifest.csv", data),
            C("task-data-file", base + "files/cubes/P1%23a.bin", data),
            C(
                "task-data-file",
                base + "files/../../etc/passwd",
                lambda r, d=data: {404} if d(r) == ok else d(r),
            ),
            # previews: same rule as the download; P1#a is not a registered training case
            C(
                "task-case-preview",
                base + "data/P1%23a/preview",
                lambda r, d=data: {404} if d(r) == ok else d(r),
            ),
            C(
                "task-case-png",
                base + "data/P1%23a/sto2.png",
                lambda r, d=data: {404} if d(r) == ok else d(r),
            ),
        ]
    for pw in w.phases:
        checks += phase_checks(pw, pol)
    return checks + organizer_phase_checks(w, pol) + organizer_page_checks(w, pol)


def organizer_phase_checks(w: World, pol: Policy) -> list[Check]:
    """Publish, hide and re-run on a phase of the other organizer's public challenge, so the
    changes they make leave the phases the other checks look at untouched."""
    p, ch = w.other_phase, w.other
    base = f"/c/{ch.slug}/{p.task.slug}/{p.slug}/"
    api = lambda r: {401} if r == "anon" else ({200} if pol.org(r, ch) else {403})  # noqa: E731
    page = lambda r: login_or(r, {302} if pol.org(r, ch) else {403})  # noqa: E731
    return [
        Check("api-phase-publish", f"/api/phases/{p.pk}/publish/", api, "post"),
        Check("api-phase-unpublish", f"/api/phases/{p.pk}/unpublish/", api, "post"),
        Check("api-phase-rerun", f"/api/phases/{p.pk}/rerun/", api, "post"),
        Check("phase-action", base + "action", page, "post", {"action": "publish"}),
        Check("phase-action", base + "action", page, "post", {"action": "rerun"}),
    ]


def organizer_page_checks(w: World, pol: Policy) -> list[Check]:
    """The organizer pages (challenges.organize_views) and bundle routes: organizers of the
    challenge only; creating or importing a challenge: staff (or challenges.add_challenge)."""
    create = lambda r: login_or(r, {200} if r == "staff" else {403})  # noqa: E731
    checks = [
        Check("organize-new", "/organize/new", create),
        Check("organize-import", "/organize/import", create),
        Check(
            "api-challenge-import-bundle",
            "/api/challenges/import/",
            lambda r: {401} if r == "anon" else ({400} if r == "staff" else {403}),
            "post",
        ),
    ]
    for ch in (w.pub, w.priv, w.other):
        o = f"/c/{ch.slug}/organize/"

        def org(r, ch=ch, ok=frozenset({200})):
            return login_or(r, set(ok) if pol.org(r, ch) else {403} if pol.sees(r, ch) else {404})

        checks += [
            Check("organize-dashboard", o, org),
            Check("organize-settings", o + "settings", org),
            Check("organize-preview", o + "preview", org),
            Check("organize-bundle", o + "bundle.yaml", org),
            Check("organize-task-new", o + "tasks/new", org),
            Check(
                "organize-action",
                o + "action",
                lambda r, org=org: org(r, ok={400}),
                "post",
                {"action": "noop"},
            ),
            Check(
                "api-challenge-bundle",
                f"/api/challenges/{ch.slug}/bundle/",
                lambda r, org=org: {401} if r == "anon" else org(r),
            ),
        ]
        task = ch.tasks.first()
        phase = task.phases.first() if task else None
        if phase is not None:
            t = f"{o}tasks/{task.slug}/"
            checks += [
                Check("organize-task", t, org),
                Check("organize-phase-new", t + "phases/new", org),
                Check("organize-phase", f"{t}phases/{phase.slug}/", org),
            ]
    p = w.other_phase
    checks.append(
        Check(
            "organize-action",
            f"/c/{w.other.slug}/organize/action",
            lambda r: login_or(r, {302} if pol.org(r, w.other) else {403}),
            "post",
            {"action": "publish", "phase": p.pk},
        )
    )
    return checks


def phase_checks(pw: PhaseWorld, pol: Policy) -> list[Check]:
    C, ok = Check, {200}
    p = pw.phase
    ch = p.task.challenge
    base = f"/c/{ch.slug}/{p.task.slug}/{p.slug}/"
    sees = lambda r: pol.sees(r, ch)  # noqa: E731
    full = lambda r: ok if pol.full(r, p) else {404}  # noqa: E731
    rows = lambda r: ok if pol.some_rows(r, p) else {404}  # noqa: E731

    def api_sub(r, sub, allowed=ok, denied=None):
        if r == "anon":
            return {401}
        if pol.view_sub(r, sub):
            return allowed if denied is None else denied
        return {404}

    def status_json(r, resp):
        if resp.status_code != 200:
            return None
        d = resp.json()
        if ("mean_dsc" in d) != pol.scores(r, pw.own, True):
            return f"mean_dsc shown={('mean_dsc' in d)}"
        if ("log" in d) != pol.logs(r, pw.own):
            return f"log shown={('log' in d)}"
        return None

    def detail_page(r, resp):
        if resp.status_code == 200 and (b'id="score"' in resp.content) != pol.scores(
            r, pw.own, True
        ):
            return "mean scores shown wrongly"
        return None

    checks = [
        C("phase-detail", base, lambda r: ok if sees(r) else {404}),
        C("phase-submit", base + "submit", lambda r: login_or(r, ok if sees(r) else {404})),
        C("phase-snapshot", base + "v1/", full),
        C("phase-snapshot", base + "v99/", lambda r: {404}),
        C("phase-export", base + "leaderboard.csv", rows),
        C("phase-export", base + "leaderboard.json", rows),
        C("phase-export", base + "leaderboard.json?version=1", rows),
        C("phase-export", base + "leaderboard.xml", lambda r: {404}),
        C("phase-report", base + "report/", full),
        C("phase-report", base + "report/?download=html", full),
        C(
            "phase-report",
            base + "report/?download=pdf",
            lambda r: {202} if pol.full(r, p) else {404},
        ),
        C("phase-report-pdf", base + "report/pdf.json", full),
        C(
            "phase-action",
            base + "action",
            lambda r: login_or(r, {403} if sees(r) else {404}),
            "post",
            {"action": "bogus"},
        ),
        C("phase-ranking-json", base + "ranking.json", full),
        C("api-phase-detail", f"/api/phases/{p.pk}/", lambda r: ok if sees(r) else {404}),
        C(
            "api-phase-quota",
            f"/api/phases/{p.pk}/quota/",
            lambda r: {401} if r == "anon" else (ok if sees(r) else {404}),
        ),
        C("api-phase-leaderboard", f"/api/phases/{p.pk}/leaderboard/", rows),
        C(
            "api-phase-submit",
            f"/api/phases/{p.pk}/submit/",
            lambda r: {401} if r == "anon" else ({400} if sees(r) else {404}),
            "post",
            {},
        ),
        C(
            "api-submission-list",
            f"/api/submissions/?phase={p.pk}&status=succeeded",
            lambda r: login_or(r, ok, 401),
        ),
    ]
    own, victim = pw.own, pw.victim
    # Another team's submission pages are organizer-only whatever the phase: check them once
    # per challenge (the markers still guard every other page of every phase).
    for sub in (own, pw.rival) if p.slug == "public-on" else (own,):
        view = lambda r, sub=sub: login_or(r, ok if pol.view_sub(r, sub) else {404})  # noqa: E731
        checks += [
            C(
                "submission-detail",
                f"/submissions/{sub.pk}/",
                view,
                extra=detail_page if sub is own else None,
            ),
            C(
                "submission-status",
                f"/submissions/{sub.pk}/status",
                view,
                extra=status_json if sub is own else None,
            ),
            C(
                "submission-action",
                f"/submissions/{sub.pk}/action",
                lambda r, sub=sub: login_or(r, {403} if pol.view_sub(r, sub) else {404}),
                "post",
                {"action": "bogus"},
            ),
            C(
                "api-submission-detail",
                f"/api/submissions/{sub.pk}/",
                lambda r, sub=sub: api_sub(r, sub),
            ),
            C(
                "api-submission-detail",
                f"/api/submissions/{sub.pk}.json",
                lambda r, sub=sub: api_sub(r, sub),
            ),
            C(
                "api-submission-cases",
                f"/api/submissions/{sub.pk}/cases/",
                lambda r, sub=sub: api_sub(r, sub, denied=ok if pol.cases(r, sub) else {403}),
            ),
            C(
                "api-submission-cancel",
                f"/api/submissions/{sub.pk}/cancel/",
                lambda r, sub=sub: api_sub(r, sub, denied={400}),
                "post",
            ),
            # The team may choose (refused here: these phases rank the best submission);
            # organizers may read the submission but not choose for the team.
            C(
                "api-submission-choose",
                f"/api/submissions/{sub.pk}/choose/",
                lambda r, sub=sub: api_sub(r, sub, denied={400} if pol.team(r, sub) else {403}),
                "post",
            ),
            C(
                "submission-action",
                f"/submissions/{sub.pk}/action",
                lambda r, sub=sub: login_or(
                    r, ({302} if pol.team(r, sub) else {403}) if pol.view_sub(r, sub) else {404}
                ),
                "post",
                {"action": "choose"},
            ),
        ]
    for sub, ranked in ((own, True), (pw.rival, True), (pw.unranked, False), (victim, False)):
        checks.append(
            C(
                "method-detail",
                f"/methods/{sub.pk}/",
                lambda r, sub=sub, ranked=ranked: (
                    ok if pol.sees(r, ch) and pol.scores(r, sub, ranked) else {404}
                ),
            )
        )
    checks.append(
        C(
            "api-submission-rerun",
            f"/api/submissions/{victim.pk}/rerun/",
            lambda r: api_sub(r, victim, denied=ok if pol.org(r, ch) else {403}),
            "post",
        )
    )
    return checks


# --- running the matrix ---------------------------------------------------------------------


def clients(w: World) -> dict[str, Client]:
    out = {}
    for r in ROLES:
        c = Client()
        if w.users[r] is not None:
            c.force_login(w.users[r])
        out[r] = c
    return out


def run_matrix(w: World, checks: list[Check]) -> tuple[list[str], int]:
    pol = Policy(w)
    problems, n = [], 0
    for r, client in clients(w).items():
        allowed = pol.markers(r)
        secrets = [m for m, ok in allowed.items() if not ok]
        for chk in checks:
            resp = getattr(client, chk.method)(chk.url, chk.data or {})
            n += 1
            want = chk.expect(r)
            if resp.status_code not in want:
                problems.append(
                    f"{r:12} {chk.method.upper()} {chk.url}: {resp.status_code}, expected {sorted(want)}"
                )
            body = b"".join(resp.streaming_content) if resp.streaming else resp.content
            text = body.decode("utf-8", "replace")
            leaked = [m for m in secrets if m in text]
            if leaked:
                problems.append(f"{r:12} {chk.method.upper()} {chk.url}: leaks {leaked}")
            if chk.extra and (msg := chk.extra(r, resp)):
                problems.append(f"{r:12} {chk.method.upper()} {chk.url}: {msg}")
    return problems, n


def test_permission_matrix(tmp_path):
    w = build_world(tmp_path)
    checks = build_checks(w, Policy(w))
    problems, n = run_matrix(w, checks)
    assert n == len(ROLES) * len(checks)
    assert not problems, f"{len(problems)} of {n} checks failed:\n" + "\n".join(problems)


def test_markers_are_really_served_to_those_allowed(tmp_path):
    """Guards the matrix against vacuous passes: the planted secrets do show up for the roles
    entitled to them."""
    w = build_world(tmp_path)
    pw = next(x for x in w.phases if x.phase.slug == "public-on")
    c = Client()
    c.force_login(w.users["owner"])
    page = c.get(f"/submissions/{pw.own.pk}/").content.decode()
    assert f"LOG{pw.tag}MARK" in page and f"CASE{pw.tag}ID0" in page
    method = c.get(f"/methods/{pw.own.pk}/").content.decode()
    assert f"SUBJ{pw.tag}Z" in method and f"CASEERR{pw.tag}Z" in method
    lb = Client().get(pw.phase.get_absolute_url()).content.decode()
    assert f"RIVAL{pw.tag}X" in lb and f"OWN{pw.tag}X" in lb
    team = next(x for x in w.phases if x.phase.slug == "team-on")
    mine = c.get(team.phase.get_absolute_url()).content.decode()
    assert f"OWN{team.tag}X" in mine and f"RIVAL{team.tag}X" not in mine
    assert "PRIVCHALLX" in c.get("/").content.decode()
    assert "MSGOWNX" in c.get("/inbox/").content.decode()


def test_every_url_is_in_the_matrix(tmp_path):
    """Fails when a URL (page or API route) is added without a row in the matrix."""
    w = build_world(tmp_path)
    covered = {c.name for c in build_checks(w, Policy(w))} | {"logout", "admin:*"}
    names, unnamed = set(), []

    def walk(patterns, prefix: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                if p.namespace == "admin":
                    names.add("admin:*")  # covered by test_admin_is_staff_only
                    continue
                walk(p.url_patterns, prefix + str(p.pattern))
            elif p.name:
                names.add(p.name)
            else:
                unnamed.append(prefix + str(p.pattern))

    walk(get_resolver().url_patterns, "")
    assert not unnamed, f"unnamed URL patterns cannot be checked: {unnamed}"
    assert names - covered == set(), f"URLs missing from the permission matrix: {names - covered}"


def test_logout_needs_post_and_works_for_everyone(tmp_path):
    w = build_world(tmp_path)
    for r in ROLES:
        c = Client()
        if w.users[r]:
            c.force_login(w.users[r])
        assert c.post("/accounts/logout/").status_code == 302
        assert "_auth_user_id" not in c.session


def test_admin_is_staff_only(tmp_path):
    w = build_world(tmp_path)
    urls = ["/admin/"] + [
        reverse(f"admin:{m._meta.app_label}_{m._meta.model_name}_changelist")
        for m in admin.site._registry
    ]
    pw = w.phases[0]
    urls.append(reverse("admin:submissions_submission_change", args=[pw.own.pk]))
    for r in ROLES:
        c = Client()
        if w.users[r]:
            c.force_login(w.users[r])
        for url in urls:
            resp = c.get(url)
            if r == "staff":
                assert resp.status_code == 200, (url, resp.status_code)
            else:
                assert resp.status_code == 302 and "/admin/login/" in resp["Location"], (r, url)


def test_snapshot_permalinks_of_hidden_phases_do_not_reveal_versions(tmp_path):
    """A missing version and a hidden one answer alike: nobody can probe which exist."""
    w = build_world(tmp_path)
    pw = next(x for x in w.phases if x.phase.slug == "hidden-off")
    base = pw.phase.get_absolute_url()
    c = Client()
    c.force_login(w.users["owner"])
    a, b = c.get(base + "v1/"), c.get(base + "v2/")
    assert a.status_code == b.status_code == 404 and a.content == b.content
    a = c.get(base + "leaderboard.json?version=1")
    b = c.get(base + "leaderboard.json?version=7")
    assert a.status_code == b.status_code == 404 and a.content == b.content


def test_private_challenge_is_indistinguishable_from_a_missing_one(tmp_path):
    w = build_world(tmp_path)
    c = Client()
    c.force_login(w.users["participant"])
    for url in ("/c/priv/", "/c/priv/organs/", "/api/challenges/priv/"):
        missing = url.replace("priv", "nope")
        a, b = c.get(url), c.get(missing)
        assert a.status_code == b.status_code == 404
        assert a.content.replace(b"priv", b"nope") == b.content
    priv_phase = next(x for x in w.phases if x.phase.task.challenge.slug == "priv").phase
    r = c.get(f"/api/phases/{priv_phase.pk}/")
    assert r.status_code == 404 and json.loads(r.content) == c.get("/api/phases/999999/").json()


def test_disqualified_method_is_hidden_from_readers(tmp_path):
    from submissions.services import set_disqualified

    w = build_world(tmp_path)
    pw = next(x for x in w.phases if x.phase.slug == "public-on")
    assert Client().get(f"/methods/{pw.rival.pk}/").status_code == 200
    set_disqualified(pw.rival, w.users["organizer"], True, "cheating")
    assert Client().get(f"/methods/{pw.rival.pk}/").status_code == 404
    org = Client()
    org.force_login(w.users["organizer"])
    assert org.get(f"/methods/{pw.rival.pk}/").status_code == 200
