# A CPU image that serves a polyhead model directory over HTTP (docs/serving.md, "Docker").
#   docker build -t polyhead .
#   docker run --rm -p 8000:8000 -v "$PWD/runs/demo/model:/model:ro" polyhead
#   docker run --rm -p 8000:8000 -v "$PWD/runs/demo/model:/model:ro" polyhead --backend onnx-int8 --api-key KEY
# Arguments after the image name are added to `polyhead serve /model --host 0.0.0.0 --port 8000`.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# torch first, pinned, from PyTorch's CPU index: an unpinned torch pulled in by a dependency would be a
# multi-GB CUDA build. Same version as `make setup`.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
# serve: fastapi/uvicorn; onnx: --backend onnx / onnx-int8 after `polyhead export`. No default model: the
# model directory is mounted (or copied) at /model.
RUN pip install '.[serve,onnx]' && rm -rf /build

RUN useradd --create-home --uid 1000 polyhead
USER polyhead
WORKDIR /home/polyhead
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"
ENTRYPOINT ["polyhead", "serve", "/model", "--host", "0.0.0.0", "--port", "8000"]
