# The processor and the dashboard (same image, different command). Used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY enrolment ./enrolment
COPY processor ./processor
COPY producer ./producer
COPY dashboard ./dashboard
COPY participants ./participants
COPY schemas ./schemas
RUN pip install --no-cache-dir -e .
# Runs as an unprivileged user (it owns nothing in the image: the code is read-only to it).
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin participants
USER 10001:10001
ENTRYPOINT ["participants"]
