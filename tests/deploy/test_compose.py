"""docker-compose.yml and the Dockerfile agree with the code: every HA_ variable is a real
setting with a valid value, URLs point at the services that serve them, state lives in
named volumes, and the image installs what the Makefile installs. Docker is not needed:
the files are read as Compose reads them (YAML, then ${VAR} interpolation from .env)."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import SecretStr, ValidationError

from hybrid_agent import cli
from hybrid_agent.config import Settings
from hybrid_agent.policies.preflight import SANDBOX_PATH
from hybrid_agent.store.db import async_url

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
MAKEFILE = ROOT / "Makefile"

# A .env as an operator writes it: only the password is required.
DOTENV = {"POSTGRES_PASSWORD": "pw-of-this-test"}
SETTING_NAMES = {f"HA_{name.upper()}" for name in Settings.model_fields}
SECRET_SETTINGS = {f"HA_{name.upper()}" for name, field in Settings.model_fields.items()
                   if SecretStr in getattr(field.annotation, "__args__", (field.annotation,))}
SERVING = {cli.cmd_api: "api", cli.cmd_router: "router", cli.cmd_worker: "worker", cli.cmd_triggers: "triggers"}
INFRASTRUCTURE = ("nats", "postgres", "redis")


class MissingVariable(LookupError):
    """A ${VAR:?message} whose variable is unset: Compose refuses to start."""


_REFERENCE = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>\w+)")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation over a loaded file: ${V}, ${V:-default} (unset or empty),
    ${V-default} (unset), ${V:?err}, ${V?err}, $V and $$ for a literal dollar."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def resolve(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name") or match.group("bare"), match.group("op"), match.group("arg")
        current = env.get(name)
        missing = current is None or (op is not None and op.startswith(":") and current == "")
        if op is not None and op.endswith("?") and missing:
            raise MissingVariable(f"{name}: {arg}")
        if op is not None and op.endswith("-") and missing:
            return arg
        return current or ""

    return _REFERENCE.sub(resolve, value)


def raw_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(raw_compose(), DOTENV)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def app_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services that run the project's image (built from the Dockerfile)."""
    return {name: svc for name, svc in services.items() if "build" in svc}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def expose(service: dict[str, Any]) -> set[int]:
    return {int(str(port).split("/")[0]) for port in service.get("expose", [])}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Mount target -> source, for short ("src:dst[:mode]") and long volume syntax."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found[volume["target"]] = volume.get("source", "")
        else:
            source, target = volume.split(":")[:2]
            found[target] = source
    return found


def profiles(service: dict[str, Any]) -> set[str]:
    return set(service.get("profiles", []))


def image_of(service: dict[str, Any]) -> str:
    return str(service.get("image", ""))


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: continuations joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    logical = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(parts[0].upper(), parts[1] if len(parts) > 1 else "")
            for parts in (line.strip().split(None, 1) for line in logical.splitlines() if line.strip())]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile_instructions():
        if instruction == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(args) if "=" in part)
    return env


def dockerfile_runs() -> str:
    return "\n".join(args for instruction, args in dockerfile_instructions() if instruction == "RUN")


def test_interpolation_follows_composes_rules():
    env = {"SET": "value", "EMPTY": ""}
    assert interpolate("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} $SET $$SET", env) == "value d  d value $SET"
    with pytest.raises(MissingVariable, match="EMPTY"):
        interpolate("${EMPTY:?needed}", env)
    assert interpolate("${EMPTY?needed}", env) == ""


def test_every_ha_variable_names_a_setting(services):
    """A renamed or removed setting breaks the deployment files here, not in production."""
    unknown = {f"{name}: {key}" for name, svc in services.items() for key in environment(svc)
               if key.startswith("HA_") and key not in SETTING_NAMES}
    unknown |= {f"Dockerfile: {key}" for key in dockerfile_env() if key.startswith("HA_") and key not in SETTING_NAMES}
    assert not unknown, f"not settings of hybrid_agent.config.Settings: {sorted(unknown)}"


def test_each_app_service_environment_makes_valid_settings(services, monkeypatch):
    for name in [key for key in os.environ if key.startswith("HA_")]:
        monkeypatch.delenv(name)
    for name, svc in app_services(services).items():
        with monkeypatch.context() as env:
            for key, value in {**dockerfile_env(), **environment(svc)}.items():
                env.setenv(key, value)
            try:
                settings = Settings()
            except ValidationError as exc:
                pytest.fail(f"service {name}: {exc}")
            assert str(settings.data_dir) in mounts(svc), f"{name}: HA_DATA_DIR {settings.data_dir} is not a mount"
            for root in settings.allowed_roots:
                assert root.is_relative_to(settings.data_dir), (
                    f"{name}: workspace root {root} is not in the shared data dir, so API and workers see different files")


def test_api_listens_on_all_interfaces_and_publishes_its_port(services):
    api = services["api"]
    env = environment(api)
    port = int(env["HA_API_PORT"])
    assert env["HA_API_HOST"] == "0.0.0.0", "in a container 127.0.0.1 is unreachable from outside it"
    published = [int(str(p["target"]) if isinstance(p, dict) else str(p).split(":")[-1].split("/")[0])
                 for p in api.get("ports", [])]
    assert published == [port], f"api publishes container ports {published}, but HA_API_PORT is {port}"
    probe = " ".join(api["healthcheck"]["test"])
    assert f":{port}/readyz" in probe, f"the api health check must ask /readyz on {port}: {probe}"
    exposed = [args for instruction, args in dockerfile_instructions() if instruction == "EXPOSE"]
    assert exposed == [str(port)], f"the Dockerfile exposes {exposed}, the api listens on {port}"


def test_infrastructure_urls_point_at_the_services_that_serve_them(services):
    nats, postgres = services["nats"], services["postgres"]
    assert "-js" in command(nats), "NATS without JetStream: the streams cannot be created"
    pg_env = environment(postgres)
    for name, svc in app_services(services).items():
        env = environment(svc)
        for key, scheme, target in (("HA_NATS_URL", "nats", "nats"), ("HA_DATABASE_URL", "postgresql", "postgres"),
                                    ("HA_REDIS_URL", "redis", "redis")):
            url = urlsplit(env.get(key, ""))
            assert url.scheme == scheme and url.hostname == target, f"{name}: {key} must be {scheme}://{target}..."
            assert url.port in expose(services[target]), (
                f"{name}: {key} port {url.port} is not one that {target} exposes {sorted(expose(services[target]))}")
        database = urlsplit(env["HA_DATABASE_URL"])
        assert (database.username, database.password, database.path.lstrip("/")) == (
            pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"], pg_env["POSTGRES_DB"]), (
            f"{name}: HA_DATABASE_URL's user, password or database differ from the postgres service's")
        assert async_url(env["HA_DATABASE_URL"]).startswith("postgresql+psycopg://")


def test_state_lives_in_named_volumes(compose, services):
    declared = set(compose.get("volumes") or {})
    sd = command(services["nats"])[command(services["nats"]).index("-sd") + 1]
    wanted = {"nats": sd, "postgres": "/var/lib/postgresql/data", "redis": "/data"}
    for name, path in wanted.items():
        source = mounts(services[name]).get(path)
        assert source in declared, f"{name}: {path} must be a named volume, not {source!r}"
    assert "--appendonly" in command(services["redis"]), "Redis without AOF loses the lease holder on restart"
    data_volumes = {mounts(svc).get(environment(svc).get("HA_DATA_DIR", "")) for svc in app_services(services).values()}
    assert len(data_volumes) == 1 and data_volumes <= declared, (
        f"the app services must share one named data volume (snapshots, admin token, workspaces): {data_volumes}")


def test_every_service_restarts_and_infrastructure_is_health_checked(services):
    for name, svc in services.items():
        policy = svc.get("restart") or (svc.get("deploy") or {}).get("restart_policy", {}).get("condition")
        assert policy in ("always", "unless-stopped", "on-failure", "any"), f"{name}: restart policy {policy!r}"
    checked = [name for name, svc in services.items() if image_of(svc).startswith(("nats", "postgres", "redis", "vllm/"))]
    assert sorted(checked) == sorted([*INFRASTRUCTURE, "vllm"])
    for name in [*checked, "api"]:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    monitor = command(services["nats"])[command(services["nats"]).index("-m") + 1]
    assert f":{monitor}/healthz" in " ".join(services["nats"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]


def test_processes_start_after_what_they_need_is_healthy(services):
    for name, svc in app_services(services).items():
        depends = svc.get("depends_on") or {}
        for needed in ("nats", "postgres"):
            assert depends.get(needed, {}).get("condition") == "service_healthy", f"{name} must wait for {needed}"
    assert services["triggers"]["depends_on"]["redis"]["condition"] == "service_healthy"
    for name, svc in services.items():
        for needed, how in (svc.get("depends_on") or {}).items():
            assert needed in services, f"{name} depends on {needed}, which is not a service"
            if how.get("condition") == "service_healthy":
                assert services[needed].get("healthcheck"), f"{name} waits for {needed}'s health, which has no check"
            assert profiles(services[needed]) <= profiles(svc), (
                f"{name} depends on {needed}, which only starts with profile {profiles(services[needed])}")


def test_workers_are_replicated(services):
    replicas = (services["worker"].get("deploy") or {}).get("replicas", 1)
    assert replicas > 1, "workers share one durable consumer; one replica leaves nothing to share"


def test_app_commands_are_the_serving_subcommands(services):
    parser = cli.build_parser()
    run = {}
    for name, svc in app_services(services).items():
        try:
            args = parser.parse_args(command(svc))
        except SystemExit:
            pytest.fail(f"{name}: `hybrid-agent {' '.join(command(svc))}` is not a valid command")
        assert args.handler in SERVING, f"{name} runs `{' '.join(command(svc))}`, which serves nothing"
        run[name] = SERVING[args.handler]
    assert set(run.values()) == set(SERVING.values()), f"every process must run somewhere: {run}"


def test_the_gpu_profile_serves_the_llm_to_its_own_workers_only(services):
    servers = {name: svc for name, svc in services.items() if image_of(svc).startswith("vllm/vllm-openai")}
    assert servers, "no vLLM service"
    for name, svc in servers.items():
        assert profiles(svc) == {"gpu"}, f"{name} must start only with --profile gpu"
    for name, svc in app_services(services).items():
        spec = environment(svc).get("HA_LLM", "transformers:default")
        backend, _, argument = spec.partition(":")
        url, _, model = argument.rpartition("#")
        host = urlsplit(url).hostname if backend == "openai" else None
        if host not in servers:
            assert "gpu" not in profiles(svc) or command(svc) != ["worker"], f"{name} is a gpu worker on {spec}"
            continue
        server = servers[host]
        assert "gpu" in profiles(svc) and command(svc) == ["worker"], f"{name} uses the gpu LLM outside the profile"
        served = command(server)[command(server).index("--served-model-name") + 1]
        port = int(command(server)[command(server).index("--port") + 1])
        assert urlsplit(url).port == port and port in expose(server), f"{name}: {url} is not where {host} listens"
        assert model == served, f"{name} asks for model {model!r}; {host} serves {served!r}"
        assert url.endswith("/v1"), f"{name}: an OpenAI-compatible base URL ends in /v1: {url}"


def test_worker_sandboxes_are_configured_for_containers(services):
    """bubblewrap in a container needs user namespaces and a fresh /proc, which Docker's
    defaults refuse; a worker without those options must say rlimit."""
    needed = {"seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"}
    workers = [name for name, svc in app_services(services).items() if command(svc) == ["worker"]]
    for name in workers:
        svc = services[name]
        sandbox = environment(svc).get("HA_SANDBOX", "auto")
        if sandbox in ("bwrap", "auto"):
            assert needed <= set(svc.get("security_opt", [])), f"{name}: HA_SANDBOX={sandbox} without {needed}"
        else:
            assert sandbox == "rlimit", f"{name}: HA_SANDBOX={sandbox}"


def test_secrets_come_from_the_env_file():
    raw = raw_compose()["services"]
    for name, svc in raw.items():
        for key, value in environment(svc).items():
            if key in SECRET_SETTINGS:
                assert value.startswith("${") and value.endswith("}"), f"{name}: {key} is written in the file"
        database = environment(svc).get("HA_DATABASE_URL")
        if database:   # read raw: urlsplit would take the "?" of ${VAR:?message} for a query
            assert re.match(r"postgresql://\w+:\$\{[^}]+\}@", database), (
                f"{name}: the database password is written in the file: {database}")
    assert environment(raw["postgres"])["POSTGRES_PASSWORD"].startswith("${"), "the database password is written in the file"
    with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):
        interpolate(raw_compose(), {})


def test_the_image_installs_what_the_makefile_installs():
    makefile = MAKEFILE.read_text()
    wheels = re.findall(r"pip install[^\n]*--no-deps\s+([\w.-]+)", makefile)
    assert wheels, "the Makefile no longer installs any wheel with --no-deps: revisit this test"
    runs = dockerfile_runs()
    for wheel in wheels:
        assert re.search(rf"pip install[^\n&]*--no-deps\s+{re.escape(wheel)}\b", runs), (
            f"the Dockerfile does not install {wheel} with --no-deps, as the Makefile does")
    assert re.search(r"pip install[^\n&]*--extra-index-url https://download\.pytorch\.org/whl/cpu \.(\s|$)", runs), (
        "the project must be installed with the CPU torch index (the torch pin alone pulls CUDA)")
    sandbox_packages = re.search(r"SANDBOX_PACKAGES\s*:=\s*(.+)", makefile).group(1).split()
    assert "bubblewrap" in sandbox_packages and re.search(r"apt-get install[^\n&]*\bbubblewrap\b", runs)
    assert re.search(r"apt-get install[^\n&]*\bgit\b", runs), "the ci_remediation template needs git"
    # The sandbox's python3 is the first on its PATH; in python:3.11-slim that is the base
    # interpreter in /usr/local/bin, not Debian's, so pytest must be installed for it.
    assert SANDBOX_PATH.split(":")[0] == "/usr/local/bin"
    assert re.search(r"/usr/local/bin/python3 -m pip install[^\n&]*\bpytest\b", runs), (
        "run_tests runs `python3 -m pytest` in the sandbox: the image's /usr/local/bin/python3 needs pytest")


def test_the_image_runs_hybrid_agent_as_a_user():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [args for instruction, args in instructions if instruction == "USER"]
    assert users and users[-1] not in ("root", "0"), f"the image runs as {users[-1] if users else 'root'}"
    assert ("ENTRYPOINT", '["hybrid-agent"]') in instructions
