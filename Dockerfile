# One image for every service: docker build --build-arg SERVICE=basic .
# The outsourced insurer builds only its own target: docker build --target insurer .
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/app/libs:/app
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
RUN useradd --system --uid 10001 settlement

FROM base AS insurer
COPY libs/ libs/
COPY services/__init__.py services/__init__.py
COPY services/insurer/ services/insurer/
COPY policies/ policies/
USER settlement
CMD ["python", "-m", "services.insurer"]

FROM base AS service
ARG SERVICE=eligibility
ENV SERVICE=${SERVICE}
COPY libs/ libs/
COPY services/ services/
COPY policies/ policies/
USER settlement
CMD ["sh", "-c", "exec python -m services.${SERVICE}"]
