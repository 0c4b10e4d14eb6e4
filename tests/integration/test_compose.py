"""docker/compose.yml: valid for `docker compose config` where the tool exists, and, always,
the structure production relies on (services, non-root images, health checks, volumes)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_services_health_checks_and_volumes():
    doc = _compose()
    services = doc["services"]
    for name in "postgres redis migrate web worker-evaluation worker-statistics beat".split():
        assert name in services, name
    assert {"gpu"} == set(services["worker-gpu"]["profiles"])
    assert {"s3"} == set(services["minio"]["profiles"])
    for name, svc in services.items():
        if name != "migrate":
            assert "healthcheck" in svc and svc["healthcheck"]["test"], f"{name}: no health check"
    app = ("migrate", "web", "worker-evaluation", "worker-statistics", "worker-gpu", "beat")
    for name in app:
        svc = services[name]
        assert "xenobench-data:/data" in svc["volumes"], name
        assert svc["environment"]["XENOBENCH_PRODUCTION"] == "1", name
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy", name
        assert not svc.get("privileged"), name
        assert "user" not in svc or svc["user"] not in ("root", "0"), name
    env = services["worker-evaluation"]["environment"]
    assert env["WORKER_QUEUES"].split(",")[0] == "evaluation"
    assert "statistics" in services["worker-statistics"]["environment"]["WORKER_QUEUES"]
    assert services["web"]["healthcheck"]["test"][-1].count("/healthz") == 1
    assert set(doc["volumes"]) >= {"xenobench-data", "postgres-data", "redis-data"}
    assert "--appendonly" in services["redis"]["command"]
    targets = {svc.get("build", {}).get("target") for svc in services.values()}
    assert {"web", "worker"} <= targets


def test_images_run_as_non_root_and_have_health_checks():
    stages: dict[str, list[str]] = {}
    current = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("FROM "):
            current = line.split(" AS ")[-1].strip()
            stages[current] = []
        elif current and line.strip():
            stages[current].append(line.strip())
    for target in ("web", "worker"):
        users = [x.split()[1] for x in stages[target] if x.startswith("USER ")]
        assert users and users[-1] not in ("root", "0"), target
        assert any(x.startswith("HEALTHCHECK") for x in stages[target]), target
    assert any("bubblewrap" in x for x in stages["worker"])
    assert (ROOT / "docker" / ".env.example").exists()
    assert (ROOT / "docker" / "entrypoint.sh").stat().st_mode & 0o111


def _has_compose() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.integration
@pytest.mark.skipif(not _has_compose(), reason="the docker compose plugin is not installed here")
def test_docker_compose_config_accepts_the_file():
    out = subprocess.run(
        [
            "docker",
            "compose",
            "-f",
            str(COMPOSE),
            "--env-file",
            str(ROOT / "docker" / ".env.example"),
            "config",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


def test_an_extra_worker_machine_shares_no_file_system():
    """docker/compose.worker.yml: the worker image alone, S3 storage required, its own volume
    for scratch and the object cache (docs/deployment.md, "Several machines")."""
    doc = yaml.safe_load((ROOT / "docker" / "compose.worker.yml").read_text())
    (svc,) = doc["services"].values()
    assert svc["build"]["target"] == "worker" and svc["command"] == ["worker"]
    env = svc["environment"]
    assert env["S3_BUCKET"].startswith("${S3_BUCKET:?")  # refuses to start without S3
    assert "WORKER_CACHE_MB" in env and env["DATA_ROOT"] == "/data"
    assert svc["volumes"] == ["worker-data:/data"]  # not the main host's xenobench-data
    assert svc["healthcheck"]["test"] and not svc.get("privileged")
    compose = _compose()["services"]
    assert compose["migrate"]["depends_on"]["minio"]["required"] is False
