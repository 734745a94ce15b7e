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
ENTRYPOINT ["participants"]
