"""A local labeling web page for one labeling batch: the human oracle of practitioner mode.

`LabelingServer` serves, on 127.0.0.1 only, one self-contained page (inline HTML/CSS/JS) showing
the batch's images as a grid; keyboard shortcuts label the current image. Every change is
POSTed and the labels file is rewritten at once (atomically), so closing the page or stopping
the server loses nothing, and a later start resumes from the file.

Routes: GET / (the page), GET /state (classes, shortcuts, samples and labels as JSON),
GET /image/<sample_id> (a downscaled PNG; only the request's ids), POST /label with
{"sample_id": int, "label": class name, or "" to clear}.
"""

from __future__ import annotations

import io
import json
import os
import signal
import string
import sys
import threading
import webbrowser
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tavaal.errors import DatasetError, LabelingError
from tavaal.labeling.images import fitted, open_rgb
from tavaal.labeling.request import LabelRequest, read_labels, read_request, write_labels

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
THUMBNAIL_SIZE = 160
# Keys the page uses to move the cursor, so never class shortcuts.
NAVIGATION_KEYS = ("j", "k")


def shortcut_keys(num_classes: int) -> list[str | None]:
    """The key of each class: 1..9 then 0 for the first ten, then letters except NAVIGATION_KEYS;
    None for classes beyond those (labeled by clicking their button)."""
    keys = [*"1234567890", *(c for c in string.ascii_lowercase if c not in NAVIGATION_KEYS)]
    return [keys[i] if i < len(keys) else None for i in range(num_classes)]


class LabelingServer:
    """The labeling page of one request, served from a background thread.

    >>> server = LabelingServer("results/.../label_request.json", port=0)
    >>> port = server.start()   # port 0 binds any free port
    >>> server.url, server.stop()
    """

    def __init__(self, request: LabelRequest | Path | str, port: int = DEFAULT_PORT) -> None:
        self.request = request if isinstance(request, LabelRequest) else read_request(request)
        # Refuse a mismatching labels file now, before anyone labels on top of it.
        self._labels = read_labels(self.request)
        self._port = port
        self._lock = threading.Lock()
        self._thumbnails: dict[int, bytes] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def labels(self) -> dict[int, str]:
        with self._lock:
            return dict(self._labels)

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the labeling server is not started")
        return f"http://{HOST}:{self._httpd.server_address[1]}/"

    def start(self) -> int:
        """Listen on 127.0.0.1 and serve in a daemon thread; return the bound port."""
        try:
            self._httpd = ThreadingHTTPServer((HOST, self._port), _handler_for(self))
        except OSError as exc:
            raise LabelingError(
                f"cannot listen on {HOST}:{self._port} ({exc.strerror or exc}); "
                "choose another port (tavaal label --port)"
            ) from None
        self._httpd.daemon_threads = True
        # A short poll interval makes stop() (which waits for the next poll) quick.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="tavaal-labeling",
            daemon=True,
        )
        self._thread.start()
        return self._httpd.server_address[1]

    def wait(self) -> None:
        """Block until the server stops; Ctrl-C raises KeyboardInterrupt here."""
        # Short joins keep the main thread responsive to SIGINT.
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = self._thread = None

    def __enter__(self) -> LabelingServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def state(self) -> dict:
        request = self.request
        labels = self.labels
        return {
            "experiment": request.experiment,
            "method": request.method,
            "seed": request.seed,
            "stage": request.stage,
            "classes": list(request.classes),
            "keys": shortcut_keys(len(request.classes)),
            "labels_file": str(request.labels_file),
            "samples": [
                {
                    "sample_id": s.sample_id,
                    "row": s.row,
                    "name": Path(s.path).name,
                    "label": labels.get(s.sample_id, ""),
                }
                for s in request.samples
            ],
        }

    def set_label(self, sample_id: int, label: str) -> int:
        """Record `label` ("" clears) and rewrite the labels file; return how many are labeled."""
        with self._lock:
            if label:
                self._labels[sample_id] = label
            else:
                self._labels.pop(sample_id, None)
            write_labels(self.request, self._labels)
            return len(self._labels)

    def thumbnail(self, sample_id: int) -> bytes:
        """The PNG of a sample's image scaled to fit THUMBNAIL_SIZE, made once and cached."""
        png = self._thumbnails.get(sample_id)
        if png is None:
            image = fitted(open_rgb(self.request.sample(sample_id).path), THUMBNAIL_SIZE)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            png = self._thumbnails[sample_id] = buffer.getvalue()
        return png


def serve_labeling(
    request_json: Path | str,
    port: int = DEFAULT_PORT,
    open_browser: bool = False,
    log: Callable[[str], None] = print,
) -> None:
    """Serve the labeling page of a request until Ctrl-C (or SIGTERM)."""
    if threading.current_thread() is threading.main_thread():
        # A process started in the background of a script inherits SIGINT as ignored, and
        # Python then installs no KeyboardInterrupt for it: take Ctrl-C (and a kill) back.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    server = LabelingServer(request_json, port)
    server.start()
    labels_file = server.request.labels_file
    log(f"labeling page: {server.url}")
    log(
        f"labels file: {labels_file} ({len(server.labels)} of {len(server.request.samples)} "
        "labeled); press Ctrl-C to stop"
    )
    if open_browser:
        _open_browser(server.url, log)
    try:
        server.wait()
    except KeyboardInterrupt:
        log(
            f"stopped; {len(server.labels)} of {len(server.request.samples)} labeled in "
            f"{labels_file}"
        )
    finally:
        server.stop()


def _open_browser(url: str, log: Callable[[str], None]) -> None:
    # Without a graphical session, webbrowser would start a console browser (lynx, w3m) in this
    # very terminal, hiding the log and Ctrl-C behind it.
    graphical = sys.platform in ("darwin", "win32") or any(
        os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY")
    )
    if not (graphical and webbrowser.open(url)):
        log("no browser opened: open the URL above in a browser on this machine")


def _handler_for(server: LabelingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        labeling = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    labeling: LabelingServer

    def log_message(self, format, *args) -> None:
        """Quiet: the terminal shows the URL and the labels file, not every thumbnail request."""

    def do_GET(self) -> None:
        if not self._trusted_host():
            return
        if self.path == "/":
            self._send(HTTPStatus.OK, PAGE.encode(), "text/html; charset=utf-8")
        elif self.path == "/state":
            self._send_json(HTTPStatus.OK, self.labeling.state())
        elif self.path.startswith("/image/"):
            self._send_image(self.path.removeprefix("/image/"))
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {self.path}"})

    def do_POST(self) -> None:
        if not self._trusted_host():
            return
        if self.path != "/label":
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {self.path}"})
            return
        request = self.labeling.request
        try:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length))
            sample_id, label = body["sample_id"], body["label"]
        except (ValueError, TypeError, KeyError):
            self._send_json(
                HTTPStatus.BAD_REQUEST, {"error": 'expected {"sample_id": int, "label": str}'}
            )
            return
        if not isinstance(sample_id, int) or request.sample(sample_id) is None:
            self._send_json(
                HTTPStatus.BAD_REQUEST, {"error": f"sample_id {sample_id!r} is not in this batch"}
            )
            return
        if not isinstance(label, str) or (label and label not in request.classes):
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": f"{label!r} is not a class"})
            return
        try:
            labeled = self.labeling.set_label(sample_id, label)
        except OSError as exc:
            self._send_json(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": f"cannot write {request.labels_file}: {exc}"},
            )
            return
        self._send_json(HTTPStatus.OK, {"labeled": labeled, "total": len(request.samples)})

    def _trusted_host(self) -> bool:
        # Another site's page could reach 127.0.0.1 through a DNS name it controls (DNS
        # rebinding); such requests carry that name in Host, so only local names are served.
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        if host in (HOST, "localhost"):
            return True
        self._send_json(HTTPStatus.FORBIDDEN, {"error": "use http://127.0.0.1"})
        return False

    def _send_image(self, raw_id: str) -> None:
        sample_id = int(raw_id) if raw_id.isdigit() else None
        if sample_id is None or self.labeling.request.sample(sample_id) is None:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no image {raw_id!r} in this batch"})
            return
        try:
            png = self.labeling.thumbnail(sample_id)
        except DatasetError as exc:
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(exc)})
            return
        self._send(HTTPStatus.OK, png, "image/png")

    def _send_json(self, status: HTTPStatus, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tavaal labeling</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
  header { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #ccc;
           padding: 8px 12px; z-index: 1; }
  h1 { font-size: 16px; margin: 0 0 6px; }
  #classes button { margin: 2px 4px 2px 0; padding: 3px 8px; cursor: pointer; }
  #classes kbd, .help kbd { background: #eee; border: 1px solid #bbb; border-radius: 3px;
                            padding: 0 4px; font-family: monospace; }
  #progress { font-weight: bold; margin-right: 16px; }
  .help { color: #555; }
  #done { display: none; background: #d7f5d7; border: 1px solid #6b6; padding: 8px;
          margin-top: 6px; font-weight: bold; }
  #error { display: none; background: #fbd; border: 1px solid #c66; padding: 8px;
           margin-top: 6px; }
  #grid { display: flex; flex-wrap: wrap; gap: 8px; padding: 12px; }
  .cell { width: 168px; background: #fff; border: 3px solid #ddd; border-radius: 4px;
          cursor: pointer; text-align: center; }
  .cell img { width: 160px; height: 160px; object-fit: contain; background: #eee;
              display: block; margin: 4px auto 0; }
  .cell .caption { font-size: 12px; color: #666; }
  .cell .label { min-height: 18px; font-weight: bold; padding-bottom: 2px; }
  .cell.labeled { border-color: #6b6; }
  .cell.current { border-color: #1565c0; box-shadow: 0 0 0 3px #90caf9; }
</style>
</head>
<body>
<header>
  <h1 id="title">tavaal labeling</h1>
  <div id="classes"></div>
  <div><span id="progress">loading...</span>
    <span class="help">class key: label the current image and go to the next unlabeled one;
    <kbd>&larr;</kbd><kbd>&rarr;</kbd> or <kbd>k</kbd><kbd>j</kbd>: move;
    <kbd>Backspace</kbd>/<kbd>Delete</kbd>: clear; click an image to select it.
    Saved at once to <code id="labels-file"></code>.</span></div>
  <div id="done">All labeled &mdash; close this page and rerun snakemake.</div>
  <div id="error"></div>
</header>
<div id="grid"></div>
<script>
"use strict";
let state = null, cursor = 0, pending = 0, queue = Promise.resolve();
const keyToClass = {};

function el(tag, props, children) {
  const node = Object.assign(document.createElement(tag), props || {});
  for (const child of children || []) node.append(child);
  return node;
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.style.display = message ? "block" : "none";
}

function render() {
  const samples = state.samples;
  const labeled = samples.filter(s => s.label).length;
  document.getElementById("progress").textContent =
    `labeled ${labeled} of ${samples.length}`;
  document.getElementById("done").style.display =
    labeled === samples.length ? "block" : "none";
  samples.forEach((s, i) => {
    const cell = document.getElementById(`cell-${s.sample_id}`);
    cell.classList.toggle("labeled", Boolean(s.label));
    cell.classList.toggle("current", i === cursor);
    cell.querySelector(".label").textContent = s.label;
  });
  document.body.dataset.pending = String(pending);
}

function moveTo(index) {
  if (!state.samples.length) return;
  cursor = Math.max(0, Math.min(state.samples.length - 1, index));
  render();
  document.getElementById(`cell-${state.samples[cursor].sample_id}`)
    .scrollIntoView({block: "nearest"});
}

function nextUnlabeled(from) {
  const n = state.samples.length;
  for (let step = 1; step <= n; step++) {
    const i = (from + step) % n;
    if (!state.samples[i].label) return i;
  }
  return from;
}

function setLabel(index, label) {
  const sample = state.samples[index];
  sample.label = label;
  pending++;
  render();
  // Chained, so the server sees changes in the order they were made.
  queue = queue.then(async () => {
    try {
      const response = await fetch("/label", {
        method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({sample_id: sample.sample_id, label: label}),
      });
      if (!response.ok) throw new Error((await response.json()).error);
      showError("");
    } catch (err) {
      showError(`not saved: ${err.message}; reload the page`);
    } finally {
      pending--;
      render();
    }
  });
}

document.addEventListener("keydown", event => {
  if (!state || event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key;
  if (key in keyToClass) {
    setLabel(cursor, keyToClass[key]);
    moveTo(nextUnlabeled(cursor));
  } else if (key === "ArrowRight" || key === "ArrowDown" || key === "j") {
    moveTo(cursor + 1);
  } else if (key === "ArrowLeft" || key === "ArrowUp" || key === "k") {
    moveTo(cursor - 1);
  } else if (key === "Backspace" || key === "Delete") {
    setLabel(cursor, "");
  } else {
    return;
  }
  event.preventDefault();
});

async function load() {
  state = await (await fetch("/state")).json();
  document.getElementById("title").textContent =
    `tavaal labeling: ${state.experiment} / ${state.method} / seed ${state.seed} / ` +
    `stage ${state.stage}`;
  document.getElementById("labels-file").textContent = state.labels_file;
  const classes = document.getElementById("classes");
  state.classes.forEach((name, i) => {
    const key = state.keys[i];
    if (key !== null) keyToClass[key] = name;
    const button = el("button", {type: "button"},
      key === null ? [name] : [el("kbd", {textContent: key}), " " + name]);
    button.addEventListener("click", () => {
      button.blur();  // so Enter or Space cannot label again by pressing the button
      setLabel(cursor, name);
      moveTo(nextUnlabeled(cursor));
    });
    classes.append(button);
  });
  const grid = document.getElementById("grid");
  state.samples.forEach((s, i) => {
    const cell = el("div", {className: "cell", id: `cell-${s.sample_id}`, title: s.name}, [
      el("img", {src: `/image/${s.sample_id}`, alt: s.name, loading: "lazy"}),
      el("div", {className: "caption", textContent: `#${s.row} \\u00b7 id ${s.sample_id}`}),
      el("div", {className: "label"}),
    ]);
    cell.addEventListener("click", () => moveTo(i));
    grid.append(cell);
  });
  const first = state.samples.findIndex(s => !s.label);
  moveTo(first === -1 ? 0 : first);
  document.body.dataset.ready = "1";
}

load().catch(err => showError(`cannot load the batch: ${err.message}`));
</script>
</body>
</html>
"""
