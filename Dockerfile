FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY pyproject.toml requirements.lock README.md ./
COPY api ./api
COPY geo ./geo
COPY offers ./offers
COPY core ./core
COPY mobile_sdk ./mobile_sdk
COPY checkin_offers ./checkin_offers
COPY bench ./bench
COPY migrations ./migrations
COPY alembic.ini ./

# Editable: the code, alembic.ini and migrations/ stay together in /app, where `migrate` finds them.
RUN pip install -c requirements.lock -e . \
 && useradd --create-home --uid 10001 app

USER app
EXPOSE 8000
CMD ["checkin-offers", "serve", "--host", "0.0.0.0", "--port", "8000"]
