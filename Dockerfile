# pidflow image: API, Celery workers (CPU or GPU) and the dashboard share it. The HEALTHCHECK below is the
# API's; docker-compose.yml gives the worker services their own (Celery ping / worker heartbeat).
#   CPU:  docker build -t pidflow .
#   GPU:  docker build -t pidflow-gpu --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/data/hf

WORKDIR /srv/pidflow
# the exact versions pidflow is tested with (pyproject.toml declares ranges)
COPY constraints.txt ./
# torch first, at the tested version, from the chosen index (CPU wheels by default; CUDA ones for GPU workers;
# torch==2.13.0 is met by their 2.13.0+cpu / +cu128); the next install aligns its dependencies with the file
RUN pip install "$(grep -m1 '^torch==' constraints.txt)" --index-url "${TORCH_INDEX_URL}"
COPY pyproject.toml setup.py MANIFEST.in README.md LICENSE ./
COPY pidcore ./pidcore
COPY worker ./worker
COPY app ./app
COPY static ./static
# pidflow as users install it: a wheel with the dashboard's CSS, plotly.js bundle and API docs UI as package
# data (setup.py vendors them at build time, from static/vendor/ if the build context has them, else from the
# npm registry), the server extra, every version from constraints.txt (the torch above is kept). The sources
# go afterwards, so the image runs the installed package. /data/features (the features volume) and /data/hf
# belong to the image's user, so a fresh named volume mounted there is writable by it.
RUN pip install -c constraints.txt ".[server]" \
    && rm -rf pidcore worker app static build pidflow.egg-info \
    && useradd --create-home --uid 1000 pidflow \
    && mkdir -p /data/hf /data/features && chown pidflow:pidflow /data/hf /data/features
USER pidflow

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD python -c "import httpx,sys; sys.exit(httpx.get('http://127.0.0.1:8000/api/v1/healthz').status_code != 200)"
CMD ["uvicorn", "app.server:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
