# The deployer image: `docker run ... IMAGE run -f k8s/ ...` runs `deployer` with the arguments given.
#
# BASE_IMAGE picks the Python base (>= 3.11, Debian-like, with python3 and the venv module); every stage
# uses the same one, so the venv copied into the last stage finds its interpreter at the same path.
# Plain Dockerfile syntax only: it builds on the classic builder as well as on BuildKit.
#
# Building an image (deployer's own `build` step) needs the host's Docker engine. Mount its socket and add
# the socket's group, since the image runs as the unprivileged user `deployer` (uid 10001):
#
#   docker run --rm -v /var/run/docker.sock:/var/run/docker.sock \
#     --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -v "$PWD:/work" -e GITHUB_REPOSITORY -e GITHUB_SHA -e DEPLOYER_REGISTRY_PASSWORD IMAGE run -f k8s/
#
# Without the socket, `run --no-build` (deploying an image built elsewhere) and `run --dry-run --no-build`
# work as they are. The image has no docker CLI: builds go through the engine API (classic builder).
ARG BASE_IMAGE=python:3.12-slim

# --- 1: wheels for deployer and every dependency --------------------------------------------------------
FROM ${BASE_IMAGE} AS wheels
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/build-tools
WORKDIR /src
# Metadata first: the dependencies' wheels are a layer of their own, built from pyproject.toml alone with an
# empty stand-in package and readme, so a change to deployer's sources or README reuses that layer (from the
# builder's cache) and only deployer's own wheel is built again.
COPY pyproject.toml ./
RUN mkdir deployer && touch deployer/__init__.py README.md \
    && /opt/build-tools/bin/pip wheel --wheel-dir /wheels . \
    && rm -r deployer README.md /wheels/deployer-*.whl
COPY README.md ./
COPY deployer ./deployer
RUN /opt/build-tools/bin/pip wheel --no-deps --wheel-dir /wheels .

# --- 2: the venv, installed from those wheels only ------------------------------------------------------
FROM ${BASE_IMAGE} AS venv
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=wheels /wheels /wheels
RUN python3 -m venv /opt/deployer \
    && /opt/deployer/bin/pip install --no-index --find-links /wheels deployer \
    # pip and setuptools are not needed to run deployer: they stay out of the final image.
    && /opt/deployer/bin/python -m pip uninstall --yes pip setuptools wheel \
    && /opt/deployer/bin/python -m compileall -q /opt/deployer \
    && /opt/deployer/bin/deployer --version

# --- 3: runtime: the base, the venv, an unprivileged user -----------------------------------------------
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="deployer" \
      org.opencontainers.image.description="Build, push, apply and verify a Kubernetes rollout; roll back on failure."
COPY --from=venv /opt/deployer /opt/deployer
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin deployer \
    && mkdir -p /work && chown deployer:deployer /work
ENV PATH=/opt/deployer/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /work
ENTRYPOINT ["deployer"]
CMD ["--help"]
