# The processor and the dashboard (same image, different command). Used by docker-compose.yml.
# The base image is pinned to an exact release; Python packages come from requirements-runtime.lock, each
# checked against its hashes (`make lock` regenerates it). The processes run as an unprivileged user.
FROM python:3.11.14-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements-runtime.lock ./
RUN pip install --require-hashes -r requirements-runtime.lock
COPY pyproject.toml README.md ./
COPY enrolment ./enrolment
COPY processor ./processor
COPY producer ./producer
COPY dashboard ./dashboard
COPY participants ./participants
COPY schemas ./schemas
# The build backend (setuptools) is in the lock: no unhashed download here.
RUN pip install --no-deps --no-build-isolation -e . \
 && groupadd --system --gid 10001 participants \
 && useradd --system --uid 10001 --gid participants --create-home --home-dir /home/participants participants
# The code stays owned by root: the application user can read it, not change it.
USER 10001:10001
ENTRYPOINT ["participants"]
