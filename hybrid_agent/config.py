"""The one typed settings object. Read from the environment (prefix ``HA_``) once, at the
entry point, and passed down; no other module reads the environment."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hybrid_agent.bus.messages import QUEUE_PATTERN
from hybrid_agent.policies.tool_schema import DEFAULT_TEST_CMD


# Which parts of the hybrid model run: all, the LLM alone, without the EBM or the HRM, or
# with the HRM swapped for its flat (same size, no hierarchy) variant.
Ablation = Literal["full", "llm_only", "no_ebm", "no_hrm", "flat_hrm"]
ABLATIONS: tuple[str, ...] = get_args(Ablation)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HA_", extra="ignore")

    data_dir: Path = Field(default=Path("~/.hybrid-agent"), description="state: database, JetStream, workspaces, token")
    nats_url: str | None = Field(default=None, description="external NATS (a cluster: comma-separated URLs); "
                                "unset starts an embedded server")
    stream_replicas: int = Field(default=1, ge=1, le=5, description="servers of a NATS cluster each stream is kept on")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; unset uses SQLite in the data dir")
    redis_url: str | None = Field(default=None, description="Redis for coordination; unset uses in-process")
    llm: str = Field(default="transformers:default", description="LLM backend spec")
    llm_timeout_s: float = Field(default=60.0, gt=0, description="one request to a served LLM (openai:)")
    llm_retries: int = Field(default=2, ge=0, description="retries of a served LLM on connection errors, 429, 5xx")
    llm_api_key: SecretStr | None = Field(default=None, description="bearer key for a served LLM; never logged")
    api_host: str = "127.0.0.1"
    api_port: int = 8600
    workspace_roots: list[Path] = Field(default_factory=list, description="allowed workspace roots")
    llm_adapter: Path | None = Field(default=None, description="LoRA adapter directory (hybrid-agent train sft), "
                                     "merged into the transformers LLM at load")
    llm_quantize: Literal["none", "fp16", "int8"] = Field(
        default="fp16", description="the transformers LLM's linear weights: fp16 (float32's calls but for near ties, "
                                    "about 2x faster steps on CPU), none (float32), int8 (faster still; calls move)")
    llm_max_new_tokens: int = Field(default=192, ge=16, description="tokens one tool call may take")
    llm_loop_tokens: int = Field(
        default=32, ge=0, description="a call whose last N tokens repeat one span of up to 16 tokens is cut short "
                                      "as a loop (transformers backend; 0: never, the call runs on to max_new_tokens)")
    llm_temperature: float = Field(default=0.6, gt=0, le=2, description="sampling temperature when K > 1")
    model_cache: Path | None = Field(default=None, description="converted model weights; default <data dir>/models")
    policy: Path | None = Field(default=None, description="tool policy YAML; unset uses the shipped default")
    tpc: bool = Field(default=True, description="consult the tool-policy classifier on calls the rules allow")
    tpc_checkpoint: Path | None = Field(default=None, description="classifier weights; unset uses the shipped ones")
    sandbox: str = Field(default="auto", description="tool isolation: auto (bwrap where it works), bwrap, rlimit")
    require_bwrap: bool = Field(default=False, description="refuse to start when bubblewrap is not usable")
    sandbox_memory_mb: int = Field(default=2048, ge=64, description="address space of each sandboxed process")
    sandbox_file_size_mb: int = Field(default=256, ge=1, description="largest file a sandboxed command may write")
    sandbox_max_processes: int = Field(default=256, ge=8, description="processes and threads of one command")
    sandbox_tmp_mb: int = Field(default=256, ge=1, description="size of the sandbox's private /tmp (bwrap)")
    sandbox_read_paths: list[Path] = Field(default_factory=lambda: [Path("/var/log")],
                                           description="extra paths a bwrap sandbox may read")
    token: str | None = Field(default=None, description="API token the CLI client sends")

    max_steps: int = Field(default=8, ge=1, description="agent steps per task")
    max_seconds: float = Field(default=300.0, gt=0, description="wall-clock budget per task")
    tool_timeout_s: float = Field(default=30.0, gt=0, description="default timeout of one tool call")
    tool_max_timeout_s: float = Field(default=300.0, gt=0, description="longest timeout a tool call may ask for")
    test_cmd: str = Field(default=DEFAULT_TEST_CMD, description="what run_tests runs when the call names no command")
    ablation: Ablation = Field(
        default="full", description="which parts of the hybrid model run")
    hrm_checkpoint: Path | None = Field(default=None, description="HRM weights; unset: the shipped ones, else neutral")
    ebm_checkpoint: Path | None = Field(default=None, description="EBM weights; unset: the shipped ones, else neutral")
    experts: list[Literal["code_edit", "playbook"]] = Field(default_factory=lambda: ["code_edit", "playbook"],
                               description="proposers besides the LLM: code_edit, playbook")
    max_candidates: int = Field(default=8, ge=1, le=16, description="the most candidates the scheduler may ask for")
    max_output_chars: int = Field(default=4000, ge=256, description="tool output kept per call")
    candidates: int = Field(default=1, ge=1, le=16, description="LLM candidates per step (K)")
    seed: int = 0

    snapshot_retention_days: float = Field(default=7.0, gt=0, description="snapshots older than this may be "
                                           "garbage-collected (hybrid-agent snapshot gc)")
    rollback_failed_tasks: bool = Field(default=True, description="undo a failed or cancelled task's changes")
    approval_ttl_s: float = Field(default=3600.0, gt=0, description="a held call not decided within this expires "
                                  "(expiry = reject)")

    rules_file: Path | None = Field(default=None, description="rules YAML (events -> tasks, schedules, file "
                                    "watches); unset: <data dir>/rules.yaml when present")
    triggers: bool = Field(default=True, description="run the file and cron trigger sources in this process "
                           "(one process of the cluster publishes: a lease elects it)")
    trigger_lease_ttl_s: float = Field(default=10.0, gt=0, description="the trigger leader's lease; another "
                                       "process takes over this long after the leader dies")
    outbox_flush_s: float = Field(default=2.0, gt=0, description="how often events stored while the bus was "
                                  "unreachable are published again")
    webhook_secret_github: SecretStr | None = Field(default=None, description="GitHub webhook secret "
                                                    "(X-Hub-Signature-256); unset refuses /hooks/github")
    webhook_secret_generic: SecretStr | None = Field(default=None, description="HMAC secret of /hooks/generic "
                                                     "(X-HA-Signature); unset refuses it")
    webhook_token_alertmanager: SecretStr | None = Field(default=None, description="bearer token or "
                                                         "user:password Alertmanager sends; unset refuses it")
    # Half of NATS's default 1 MiB message limit: the event carries the body and the fields read from it.
    webhook_max_body_bytes: int = Field(default=524_288, ge=1024, description="larger webhook bodies get 413")
    webhook_max_age_s: float = Field(default=300.0, gt=0, description="older X-HA-Timestamp values are refused")
    webhook_rate_per_min: int = Field(default=600, ge=1, description="webhook requests per source per minute "
                                      "before 429")

    ack_wait_s: float = Field(default=60.0, gt=0, description="JetStream ack wait before redelivery")
    max_deliver: int = Field(default=3, ge=1, description="deliveries before a task goes to dead letter")
    nak_delay_s: float = Field(default=2.0, ge=0, description="redelivery delay after a transient error")
    worker_queues: list[str] = Field(default_factory=lambda: ["default"], min_length=1,
                                     description="queues a worker serves (JSON list); tasks of other queues wait "
                                     "for workers that serve them")
    worker_concurrency: int = Field(default=1, ge=1, le=64, description="tasks one worker runs at once")
    task_stale_s: float = Field(default=900.0, gt=0, description="a running task whose worker sent no heartbeat "
                                "for this long goes back to the queue (its worker vanished and its message with it)")

    @field_validator("worker_queues")
    @classmethod
    def _queue_names(cls, queues: list[str]) -> list[str]:
        for queue in queues:
            if not re.fullmatch(QUEUE_PATTERN, queue):
                raise ValueError(f"queue name {queue!r}: use 1-40 of a-z, 0-9, _ and -")
        return list(dict.fromkeys(queues))

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'hybrid-agent.db'}"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def workspaces_dir(self) -> Path:
        return self.data_dir / "workspaces"

    @property
    def allowed_roots(self) -> list[Path]:
        roots = self.workspace_roots or [self.workspaces_dir, Path(tempfile.gettempdir())]
        return [root.expanduser().resolve() for root in roots]

    @property
    def model_cache_dir(self) -> Path:
        return (self.model_cache or self.data_dir / "models").expanduser()

    @property
    def rollback_dir(self) -> Path:
        """Snapshot contents, manifests and scope leases."""
        return self.data_dir / "rollback"

    @property
    def rules_path(self) -> Path | None:
        if self.rules_file is not None:
            return self.rules_file.expanduser()
        default = self.data_dir / "rules.yaml"
        return default if default.is_file() else None

    @property
    def admin_token_file(self) -> Path:
        return self.data_dir / "admin.token"
