"""``synchuman``: run the embedded stack and turn photos into GLB files.

    synchuman up                          start Redis + API + one worker here (Ctrl-C stops)
    synchuman generate photo.png -o out/  submit, follow progress, write out/output.glb (+ thumbnail)
    synchuman generate photo.png --format usdz --format obj   ... and the USDZ and OBJ too
    synchuman status JOB_ID               print a job as JSON
    synchuman download JOB_ID -o out/     fetch a finished job's files
    synchuman cancel JOB_ID               cancel a queued or running job

``generate`` talks to ``--url`` (default ``$SYNCHUMAN_URL`` or
http://127.0.0.1:8000); if nothing answers there it starts the embedded stack
for the duration of the command.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from tqdm import tqdm

from client.sdk import DEFAULT_DOWNLOADS, SyncHumanClient, SyncHumanError
from client.stack import EmbeddedStack

DEFAULT_URL = os.environ.get("SYNCHUMAN_URL", "http://127.0.0.1:8000")
API_KEY = os.environ.get("SYNCHUMAN_API_KEY") or None
"""Bearer key for services that require one (``synchuman keys create`` mints them)."""
MODEL_FORMATS = ("glb", "usdz", "obj")
"""Values of the ``formats`` option (``GET /info`` lists them; the service checks what is sent)."""


def _api_answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _parse_options(pairs: list[str]) -> dict[str, float | int]:
    options: dict[str, float | int] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if not value:
            raise SystemExit(f"--option expects NAME=VALUE, got {pair!r}")
        options[name] = float(value) if "." in value else int(value)
    return options


def _parse_deliveries(pairs: list[str]) -> dict[str, str]:
    deliveries = {}
    for pair in pairs:
        name, _, url = pair.partition("=")
        if not url:
            raise SystemExit(f"--deliver expects ARTIFACT=URL, got {pair!r}")
        deliveries[name] = url
    return deliveries


def cmd_up(args: argparse.Namespace) -> int:
    stack = EmbeddedStack(args.state_dir, port=args.port)
    print(f"starting Redis, the API and one worker (logs in {stack.state_dir / 'logs'}) ...", flush=True)
    with stack:
        print(f"ready: {stack.url}  (API docs at {stack.url}/docs; Ctrl-C stops)", flush=True)
        try:
            while all(p.alive() for p in stack.processes):
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


def _run_generate(client: SyncHumanClient, args: argparse.Namespace) -> int:
    options: dict = _parse_options(args.option)
    if args.format:
        options["formats"] = list(dict.fromkeys(args.format))
    job = client.submit(args.photo, options=options, deliver_to=_parse_deliveries(args.deliver))
    print(f"job {job['id']} queued (position {job['queue_position']})", flush=True)
    with tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {n:.0f}/100 [{elapsed}]") as bar:

        def show(update: dict) -> None:
            bar.set_description(update.get("stage") or update["status"])
            bar.update(max(update["progress"] - bar.n, 0))

        job = client.wait(job["id"], timeout=args.timeout, on_update=show, stream=args.stream)
    if job["status"] != "succeeded":
        error = job.get("error") or {}
        print(f"job {job['status']}: {error.get('code')}: {error.get('message')}", file=sys.stderr)
        return 1
    paths = client.download(job, args.output)
    for path in paths:
        print(path)
    for name, delivery in job.get("deliveries", {}).items():
        detail = f" ({delivery['error']})" if delivery["error"] else ""
        print(f"delivery of {name}: {delivery['state']}{detail}")
    return 0


EXAMPLE = "example"
"""``synchuman generate example``: a public-domain photo that scikit-image ships (NASA's astronaut portrait)."""


def example_photo() -> Path | None:
    """Path of the example photo inside the installed scikit-image package, without importing it."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "astronaut.png"
    return path if path.is_file() else None


def cmd_generate(args: argparse.Namespace) -> int:
    if args.photo == EXAMPLE and not Path(args.photo).exists():
        photo = example_photo()
        if photo is None:
            print("the example photo comes with scikit-image (pip install scikit-image)", file=sys.stderr)
            return 2
        print(f"using the example photo {photo}", flush=True)
        args.photo = str(photo)
    if not Path(args.photo).is_file():
        print(f"no such file: {args.photo}", file=sys.stderr)
        return 2
    if args.url or _api_answers(DEFAULT_URL):
        with SyncHumanClient(args.url or DEFAULT_URL, API_KEY) as client:
            return _run_generate(client, args)
    print("no API answers; starting the embedded stack for this run ...", flush=True)
    with EmbeddedStack(args.state_dir, port=args.port) as stack, SyncHumanClient(stack.url) as client:
        return _run_generate(client, args)


def cmd_status(args: argparse.Namespace) -> int:
    with SyncHumanClient(args.url or DEFAULT_URL, API_KEY) as client:
        print(json.dumps(client.get(args.job_id), indent=2))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with SyncHumanClient(args.url or DEFAULT_URL, API_KEY) as client:
        try:
            job = client.cancel(args.job_id)
        except SyncHumanError as exc:
            print(f"cannot cancel job {args.job_id}: {exc}", file=sys.stderr)
            return 1
    stopping = " (stops at its next step)" if job["status"] == "running" else ""
    print(f"job {job['id']} {job['status']}{stopping}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    with SyncHumanClient(args.url or DEFAULT_URL, API_KEY) as client:
        for path in client.download(args.job_id, args.output, names=None if args.all else DEFAULT_DOWNLOADS):
            print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synchuman", description="Photo of a person in, textured GLB out.")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run Redis, the API and one worker on this machine")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--state-dir", default="var", help="where Redis data, files and logs go")
    up.set_defaults(run=cmd_up)

    gen = sub.add_parser("generate", help="turn one photo into a GLB")
    gen.add_argument("photo", help="a photo of one person, or 'example' for a bundled public-domain photo")
    gen.add_argument("-o", "--output", default="out")
    gen.add_argument("--url", help="API base URL (default: $SYNCHUMAN_URL or an embedded stack)")
    gen.add_argument("--option", action="append", default=[], metavar="NAME=VALUE", help="e.g. seed=7, texture_size=512")
    gen.add_argument(
        "--format", action="append", choices=MODEL_FORMATS, metavar="FORMAT",
        help="also make the model in this format: usdz (AR Quick Look) or obj (zip of OBJ, MTL, texture); repeatable",
    )
    gen.add_argument(
        "--deliver", action="append", default=[], metavar="ARTIFACT=URL",
        help="also upload an artifact to your presigned PUT URL, e.g. stage2/output.glb=https://...; repeatable",
    )
    gen.add_argument(
        "--stream", action=argparse.BooleanOptionalAction, default=True,
        help="follow progress through the job's event stream (default), or poll with --no-stream",
    )
    gen.add_argument("--timeout", type=float, default=3600.0)
    gen.add_argument("--port", type=int, default=8000, help="port of the embedded stack's API")
    gen.add_argument("--state-dir", default="var")
    gen.set_defaults(run=cmd_generate)

    status = sub.add_parser("status", help="print a job as JSON")
    status.add_argument("job_id")
    status.add_argument("--url")
    status.set_defaults(run=cmd_status)

    download = sub.add_parser("download", help="download a finished job's files")
    download.add_argument("job_id")
    download.add_argument("-o", "--output", default="out")
    download.add_argument("--all", action="store_true", help="every artifact, not just the model files, thumbnail and zip")
    download.add_argument("--url")
    download.set_defaults(run=cmd_download)

    cancel = sub.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("job_id")
    cancel.add_argument("--url")
    cancel.set_defaults(run=cmd_cancel)

    sub.add_parser("keys", help="create, revoke or list API keys (operators; needs Redis access): "
                   "synchuman keys [--json] create --name NAME | revoke KEY_ID | list")
    return parser


def run_keys(argv: list[str]) -> int:
    """``synchuman keys ...``: the operator's key commands talk to Redis, not HTTP, so they run as
    their own command (``python -m api.key_admin``) beside the API rather than inside this client."""
    return subprocess.run([sys.executable, "-m", "api.key_admin", *argv], check=False).returncode


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["keys"]:
        return run_keys(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except SyncHumanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the embedded stack, if any, is already stopped
        return 130


if __name__ == "__main__":
    sys.exit(main())
