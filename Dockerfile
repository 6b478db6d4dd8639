# The triage bot: webhook mode, SQLite in the /app/data volume by default (BOT_STORE for Redis).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WEBHOOK_LISTEN=0.0.0.0 \
    WEBHOOK_PORT=8443 \
    BOT_STORE=sqlite:////app/data/sessions.db

WORKDIR /app
RUN groupadd --system --gid 10001 triage \
    && useradd --system --uid 10001 --gid triage --home-dir /app --shell /usr/sbin/nologin triage

COPY pyproject.toml README.md ./
COPY bot ./bot
COPY bot.py ./
RUN pip install --no-cache-dir . \
    && mkdir -p /app/data \
    && chown -R triage:triage /app/data
COPY flows ./flows

USER 10001:10001
VOLUME ["/app/data"]
EXPOSE 8443

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os,sys,urllib.request; port = os.environ.get('HEALTH_PORT') or os.environ.get('WEBHOOK_PORT', '8443'); sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/health' % port, timeout=4).status == 200 else 1)"]

CMD ["python", "bot.py"]
