"""A local labeling web page for one labeling batch: the human oracle of practitioner mode.

`LabelingServer` serves, on 127.0.0.1 only, one self-contained page (inline HTML/CSS/JS) showing
the batch's images as a grid; keyboard shortcuts label the current image. Every change is
POSTed and the labels file is rewritten at once (atomically), so closing the page or stopping
the server loses nothing, and a later start resumes from the file.

Routes: GET / (the page), GET /state (classes, shortcuts, samples and labels as JSON),
GET /image/<sample_id> (a downscaled PNG; only the request's ids), POST /label with
{"sample_id": int, "label": class name, or "" to clear}.

Other websites open in the same browser must not be able to label (cross-site request forgery):
a POST needs the secret token made at server start, which only the served page holds (another
origin cannot read it) and sends in the X-Tavaal-Token header; it must be
`application/json` (a plain HTML form cannot send that) and must not come from a foreign
`Origin`. Requests naming another Host are refused too (DNS rebinding).

Other editors of the labels file (a spreadsheet, a second page) are not overwritten: before each
save the file on disk is compared with what the page last read or wrote, and a change is merged
(`merge_labels`); a row both changed differently keeps the file's value and is reported to the
person as a conflict.
"""

from __future__ import annotations

import hmac
import io
import json
import os
import secrets
import signal
import string
import sys
import threading
import webbrowser
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tavaal.data.image_reader import read_rgb
from tavaal.errors import DatasetError, LabelingError
from tavaal.labeling.images import fitted
from tavaal.labeling.labels_merge import Conflict, FileStamp, Saved, merge_labels, stamp_of
from tavaal.labeling.page_markup import PAGE
from tavaal.labeling.request import LabelRequest, parse_labels, read_request, write_labels

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
THUMBNAIL_SIZE = 160
# Keys the page uses to move the cursor, so never class shortcuts.
NAVIGATION_KEYS = ("j", "k")
TOKEN_HEADER = "X-Tavaal-Token"
LOCAL_HOSTS = (HOST, "localhost")


def _log_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


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

    def __init__(
        self,
        request: LabelRequest | Path | str,
        port: int = DEFAULT_PORT,
        log: Callable[[str], None] = _log_to_stderr,
    ) -> None:
        self.request = request if isinstance(request, LabelRequest) else read_request(request)
        # Refuse a mismatching labels file now, before anyone labels on top of it.
        data, self._stamp = self._read_disk()
        self._labels = parse_labels(self.request, data) if data is not None else {}
        # What the page last read or wrote: the base of the merge with outside edits.
        self._base = dict(self._labels)
        self.token = secrets.token_urlsafe(32)
        self.log = log
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
            self._httpd = _QuietServer((HOST, self._port), _handler_for(self))
        except OSError as exc:
            raise LabelingError(
                f"cannot listen on {HOST}:{self._port} ({exc.strerror or exc}); "
                "choose another port (tavaal label --port)"
            ) from None
        self._httpd.daemon_threads = True
        self._httpd.log = self.log
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
        """What the page shows, with the labels file's edits made elsewhere since the last save
        (a reloaded page shows them; an unreadable file is reported by the next save)."""
        request = self.request
        with self._lock:
            data, stamp = self._read_disk()
            if data is not None and stamp != self._stamp:
                try:
                    theirs = parse_labels(request, data)
                except LabelingError:
                    theirs = None
                if theirs is not None:
                    # Every change on the page is saved at once, so the page holds no change
                    # of its own here: the file's labels are the merge.
                    self._labels, _ = merge_labels(self._base, self._labels, theirs)
                    self._base = dict(self._labels)
                    self._stamp = stamp
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

    def set_label(self, sample_id: int, label: str) -> Saved:
        """Record `label` ("" clears) and save the labels file, merged with any change made to
        it elsewhere since the page last read or wrote it (`merge_labels`).

        Raises LabelingError, naming the file and row, and writes nothing when the changed file
        cannot be read; a file deleted meanwhile is written anew from the page's labels.
        """
        with self._lock:
            ours = dict(self._labels)
            if label:
                ours[sample_id] = label
            else:
                ours.pop(sample_id, None)
            data, stamp = self._read_disk()
            if data is None or stamp == self._stamp:
                merged, conflicts, theirs = ours, [], None
            else:
                theirs = parse_labels(self.request, data)
                merged, conflicts = merge_labels(self._base, ours, theirs)
            if merged == theirs:
                # Nothing to add: leave the other editor's file byte for byte as it is.
                self._stamp = stamp
            else:
                written = write_labels(self.request, merged)
                self._stamp = stamp_of(self.request.labels_file.stat(), written)
            self._labels = dict(merged)
            self._base = dict(merged)
            rows = {s.sample_id: s.row for s in self.request.samples}
            found = tuple(
                Conflict(i, rows[i], ours.get(i, ""), merged.get(i, "")) for i in conflicts
            )
            for conflict in found:
                self.log(
                    f"{self.request.labels_file}: row {conflict.row} (sample {conflict.sample_id}) "
                    f"was changed elsewhere to {conflict.file or 'no label'!r}; kept it over "
                    f"the page's {conflict.page or 'no label'!r}"
                )
            return Saved(dict(merged), found)

    def _read_disk(self) -> tuple[bytes | None, FileStamp | None]:
        """The labels file's bytes and stamp; (None, None) when there is none."""
        path = self.request.labels_file
        try:
            status = path.stat()
            data = path.read_bytes()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            raise LabelingError(f"{path}: cannot read the labels file ({exc})") from None
        return data, stamp_of(status, data)

    def thumbnail(self, sample_id: int) -> bytes:
        """The PNG of a sample's image scaled to fit THUMBNAIL_SIZE, made once and cached."""
        png = self._thumbnails.get(sample_id)
        if png is None:
            image = fitted(read_rgb(self.request.sample(sample_id).path), THUMBNAIL_SIZE)
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
    server = LabelingServer(request_json, port, log)
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


class _QuietServer(ThreadingHTTPServer):
    """Errors while answering one request (a browser closing a connection, say) are one line
    in the log, not a traceback in the person's terminal."""

    log: Callable[[str], None]  # set by LabelingServer.start

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        self.log(f"request from {client_address[0]} failed: {type(error).__name__}: {error}")


class _Handler(BaseHTTPRequestHandler):
    labeling: LabelingServer

    def log_message(self, format, *args) -> None:
        """Quiet: the terminal shows the URL and the labels file, not every thumbnail request."""

    def log_error(self, format, *args) -> None:
        # The base class reports malformed requests (bad request line, version, headers) here.
        self.labeling.log(f"refused a request from {self.client_address[0]}: {format % args}")

    def do_GET(self) -> None:
        if not (self._well_formed() and self._trusted_host()):
            return
        if self.path == "/":
            page = PAGE.replace("{{TOKEN}}", self.labeling.token)
            self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
        elif self.path == "/state":
            self._send_json(HTTPStatus.OK, self.labeling.state())
        elif self.path.startswith("/image/"):
            self._send_image(self.path.removeprefix("/image/"))
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {self.path}"})

    def do_POST(self) -> None:
        if not (self._well_formed() and self._trusted_host()):
            return
        if self.path != "/label":
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {self.path}"})
            return
        if not self._from_the_page():
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
            saved = self.labeling.set_label(sample_id, label)
        except LabelingError as exc:
            # Someone else left the file unreadable: overwriting it would lose their edit.
            self._send_json(
                HTTPStatus.CONFLICT,
                {"error": f"{exc}; fix the file, then label again"},
            )
            return
        except OSError as exc:
            self._send_json(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": f"cannot write {request.labels_file}: {exc}"},
            )
            return
        self._send_json(
            HTTPStatus.OK,
            {
                "labeled": len(saved.labels),
                "total": len(request.samples),
                "labels": {str(i): name for i, name in saved.labels.items()},
                "conflicts": [
                    {"sample_id": c.sample_id, "row": c.row, "page": c.page, "file": c.file}
                    for c in saved.conflicts
                ],
            },
        )

    def _well_formed(self) -> bool:
        # The request line is decoded as Latin-1, so a raw non-ASCII byte arrives here as a
        # character; no route of the page has one.
        if self.path.isascii() and self.path.isprintable():
            return True
        self.labeling.log(
            f"refused a malformed request from {self.client_address[0]}: {self.requestline!r}"
        )
        self._send_json(HTTPStatus.BAD_REQUEST, {"error": "malformed request path"})
        return False

    def _trusted_host(self) -> bool:
        # Another site's page could reach 127.0.0.1 through a DNS name it controls (DNS
        # rebinding); such requests carry that name in Host, so only local names are served.
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        if host in LOCAL_HOSTS:
            return True
        self._send_json(HTTPStatus.FORBIDDEN, {"error": "use http://127.0.0.1"})
        return False

    def _from_the_page(self) -> bool:
        """Whether a POST comes from the served page: no foreign Origin, a JSON body and the
        server's token; otherwise answer 403 (or 415) and say why."""
        port = self.server.server_address[1]
        origin = self.headers.get("Origin")
        if origin is not None and origin not in {f"http://{h}:{port}" for h in LOCAL_HOSTS}:
            self._refuse(HTTPStatus.FORBIDDEN, f"requests from {origin} are not accepted")
            return False
        if self.headers.get_content_type() != "application/json":
            self._refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "the body must be application/json")
            return False
        token = self.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(token.encode(), self.labeling.token.encode()):
            self._refuse(HTTPStatus.FORBIDDEN, f"missing or wrong {TOKEN_HEADER}; use the page")
            return False
        return True

    def _refuse(self, status: HTTPStatus, reason: str) -> None:
        self.labeling.log(f"refused POST {self.path} from {self.client_address[0]}: {reason}")
        self._send_json(status, {"error": reason})

    def _send_image(self, raw_id: str) -> None:
        # isdecimal() alone accepts other scripts' digits, which int() reads; ids are ASCII.
        sample_id = int(raw_id) if raw_id.isascii() and raw_id.isdecimal() else None
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
        # No other site may show the page in a frame and trick clicks onto it.
        self.send_header("X-Frame-Options", "DENY")
        self.end_headers()
        self.wfile.write(body)
