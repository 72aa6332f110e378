# pidflow image: API, Celery workers (CPU or GPU) and the dashboard share it.
#   CPU:  docker build -t pidflow .
#   GPU:  docker build -t pidflow-gpu --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/data/hf

WORKDIR /srv/pidflow
# torch first, pinned, from the chosen index (CPU wheels by default; CUDA ones for GPU workers)
RUN pip install "torch==2.13.0" --index-url "${TORCH_INDEX_URL}"
COPY pyproject.toml README.md ./
COPY pidcore ./pidcore
COPY worker ./worker
COPY app ./app
COPY static ./static
RUN pip install . && (python -m app.ui.plotly_bundle || echo "dashboard: using the full plotly.js bundle") \
    && (python -m app.docs_assets || echo "API docs: linking the OpenAPI JSON") \
    && useradd --create-home --uid 1000 pidflow && mkdir -p /data/hf && chown pidflow /data/hf
USER pidflow

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD python -c "import httpx,sys; sys.exit(httpx.get('http://127.0.0.1:8000/api/v1/healthz').status_code != 200)"
CMD ["uvicorn", "app.server:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
