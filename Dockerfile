# The Guetteur worker image used by docker-compose.yml.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY streams ./streams
COPY detectors ./detectors
RUN pip install -c constraints.txt . \
    && useradd --system --uid 10001 --home /var/lib/guetteur guetteur \
    && mkdir -p /var/lib/guetteur && chown guetteur /var/lib/guetteur
USER guetteur
EXPOSE 6066
CMD ["guetteur", "worker"]
