"""Practitioner mode's labeling tools: the contact sheet, the labeling page's server (over HTTP),
`tavaal label`, and the page itself driven by keyboard in headless Chromium.

The Chromium tests skip where Debian's chromium/chromium-driver or selenium are missing, unless
TAVAAL_REQUIRE_CHROMIUM=1 (set by .ci/run, which installs them): then they fail.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from tavaal.cli import main
from tavaal.data.image_folder import load_image, read_path_labels
from tavaal.data.image_reader import BACKGROUND as WHITE
from tavaal.errors import DatasetError, LabelingError
from tavaal.labeling import LabelingServer, read_labels, read_request, write_contact_sheet
from tavaal.labeling.contact_sheet import CAPTION_HEIGHT, GAP, TITLE_HEIGHT, cell_origin
from tavaal.labeling.images import BACKGROUND
from tavaal.labeling.labels_merge import merge_labels
from tavaal.labeling.page import HOST, NAVIGATION_KEYS, THUMBNAIL_SIZE, shortcut_keys
from tavaal.labeling.request import read_answers
from tavaal.labeling.screenshot import chromium_missing, headless_chromium, screenshot_page

CLASSES = ["cat", "dog", "bird", "fish"]
# (relative path, size, PIL mode, colour): modes and formats the page and the sheet must read.
IMAGES = [
    ("pool/a/red_wide.png", (30, 20), "RGB", (220, 30, 30)),
    ("pool/a/grey.jpg", (28, 28), "L", 128),
    ("pool/b/blue_tall.png", (10, 40), "RGBA", (20, 40, 200, 255)),
    ("pool/b/c/green_palette.png", (64, 64), "P", (30, 180, 60)),
    ("pool/yellow.jpg", (50, 50), "RGB", (230, 210, 20)),
]
SAMPLE_IDS = [17, 3, 250, 42, 8]
HEADER = "sample_id,path,label\n"


def rgb_of(mode: str, colour) -> tuple[int, int, int]:
    return (colour,) * 3 if mode == "L" else tuple(colour[:3])


def make_image(path: Path, size, mode: str, colour) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        Image.new("RGB", size, colour).convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    else:
        Image.new(mode, size, colour).save(path)


@pytest.fixture
def batch(tmp_path, monkeypatch) -> Path:
    """A batch folder with relative image paths (relative to the cwd, here tmp_path); returns
    its label_request.json. The labels file goes to a folder that does not exist yet."""
    monkeypatch.chdir(tmp_path)
    for relative, size, mode, colour in IMAGES:
        make_image(tmp_path / relative, size, mode, colour)
    folder = tmp_path / "results" / "practice" / "stage1"
    folder.mkdir(parents=True)
    rows = "".join(f"{i},{p},\n" for i, (p, *_) in zip(SAMPLE_IDS, IMAGES, strict=True))
    (folder / "to_label.csv").write_text(HEADER + rows)
    request = {
        "experiment": "practice",
        "method": "entropy",
        "seed": 0,
        "stage": 1,
        "classes": CLASSES,
        "labels_file": "labels/practice/stage1/labels.csv",
        "to_label": "results/practice/stage1/to_label.csv",
    }
    (folder / "label_request.json").write_text(json.dumps(request))
    return folder / "label_request.json"


def labels_csv(labels: list[str]) -> str:
    """The exact labels file with `labels` in to_label.csv's row order."""
    rows = zip(SAMPLE_IDS, IMAGES, labels, strict=True)
    return HEADER + "".join(f"{i},{p},{label}\n" for i, (p, *_), label in rows)


LABELS_FILE = Path("labels/practice/stage1/labels.csv")


# ---------------------------------------------------------------- the contact sheet


@pytest.mark.parametrize("title", ["practice / entropy / seed 0 / stage 1", ""])
def test_contact_sheet_size_and_thumbnails(batch, tmp_path, title):
    out = tmp_path / "sheets" / "sheet.png"
    paths = [p for p, *_ in IMAGES]
    write_contact_sheet(paths, SAMPLE_IDS, out, title=title, thumb=40, columns=3)
    sheet = Image.open(out)
    assert sheet.format == "PNG" and sheet.mode == "RGB"
    # 5 images in 3 columns: 2 rows of 40-pixel cells with captions, gaps around them.
    titled = TITLE_HEIGHT if title else 0
    assert sheet.size == (GAP + 3 * (40 + GAP), titled + GAP + 2 * (40 + CAPTION_HEIGHT + GAP))
    assert sheet.size == (136, 140 if title else 120)
    for index, (_, _, mode, colour) in enumerate(IMAGES):
        x, y = cell_origin(index, thumb=40, columns=3, titled=bool(title))
        centre = sheet.getpixel((x + 20, y + 20))
        # JPEG is lossy: a few levels of tolerance.
        assert max(abs(a - b) for a, b in zip(centre, rgb_of(mode, colour), strict=True)) <= 6, (
            index
        )
    # The 30x20 image becomes 40x27, centred: the bands above and below are the background.
    x, y = cell_origin(0, thumb=40, columns=3, titled=bool(title))
    assert sheet.getpixel((x + 20, y + 2)) == BACKGROUND
    assert sheet.getpixel((x + 20, y + 37)) == BACKGROUND
    # The 10x40 image becomes 10x40 centred: background left and right of it.
    x, y = cell_origin(2, thumb=40, columns=3, titled=bool(title))
    assert sheet.getpixel((x + 5, y + 20)) == BACKGROUND
    assert sheet.getpixel((x + 20, y + 20)) == (20, 40, 200)
    # Captions are drawn: dark pixels below the first thumbnail.
    x, y = cell_origin(0, thumb=40, columns=3, titled=bool(title))
    caption = sheet.crop((x, y + 40, x + 40, y + 40 + CAPTION_HEIGHT)).convert("L")
    assert caption.getextrema()[0] < 100
    assert not list(out.parent.glob(".*.tmp"))


def test_contact_sheet_fewer_images_than_columns(batch, tmp_path):
    out = tmp_path / "two.png"
    write_contact_sheet([p for p, *_ in IMAGES[:2]], SAMPLE_IDS[:2], out, thumb=50, columns=8)
    assert Image.open(out).size == (GAP + 2 * (50 + GAP), GAP + 50 + CAPTION_HEIGHT + GAP)


def test_contact_sheet_names_an_unreadable_image(batch, tmp_path):
    broken = tmp_path / "pool" / "broken.png"
    broken.write_bytes(b"not a png at all")
    out = tmp_path / "sheet.png"
    with pytest.raises(DatasetError, match=r"pool/broken\.png: not a readable image"):
        write_contact_sheet([IMAGES[0][0], broken], [1, 2], out)
    with pytest.raises(DatasetError, match=r"pool/missing\.png: not a readable image"):
        write_contact_sheet(["pool/missing.png"], [1], out)
    assert not out.exists()


# ---------------------------------------------------------------- the request files


def test_request_is_found_from_its_folder_or_its_csv(batch):
    for given in (batch, batch.parent, batch.parent / "to_label.csv"):
        request = read_request(given)
        assert request.request_file == batch
        assert [s.sample_id for s in request.samples] == SAMPLE_IDS
        assert [s.row for s in request.samples] == [1, 2, 3, 4, 5]
        assert request.classes == tuple(CLASSES)


def test_malformed_request_is_named(batch):
    raw = json.loads(batch.read_text())
    batch.write_text(json.dumps({**raw, "seed": "zero"}))
    with pytest.raises(LabelingError, match=r"label_request\.json: 'seed' must be a int"):
        read_request(batch)
    batch.write_text(json.dumps({**raw, "classes": ["cat", "cat"]}))
    with pytest.raises(LabelingError, match="names a class twice"):
        read_request(batch)
    with pytest.raises(LabelingError, match="labeling request not found"):
        read_request(batch.parent / "nowhere")


def test_shortcut_keys_skip_the_navigation_keys():
    assert shortcut_keys(3) == ["1", "2", "3"]
    keys = shortcut_keys(40)
    assert keys[:12] == [*"1234567890", "a", "b"]
    assert not set(NAVIGATION_KEYS) & set(keys)
    # 10 digits and 24 letters; the rest are labeled by clicking their button.
    assert keys[33] == "z" and keys[34:] == [None] * 6


# ---------------------------------------------------------------- the server over HTTP


def call(
    url: str, payload=None, host: str | None = None, token: str | None = None
) -> tuple[int, bytes]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    if host is not None:
        request.add_header("Host", host)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("X-Tavaal-Token", token)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def post(server: LabelingServer, payload) -> tuple[int, bytes]:
    """POST /label as the served page does: JSON, with the server's token."""
    return call(server.url + "label", payload, token=server.token)


def test_posted_labels_land_in_the_csv(batch):
    with LabelingServer(batch, port=0) as server:
        assert server.url.startswith("http://127.0.0.1:")
        status, body = post(server, {"sample_id": 250, "label": "bird"})
        reply = {"labeled": 1, "total": 5, "labels": {"250": "bird"}, "conflicts": []}
        assert (status, json.loads(body)) == (200, reply)
        assert LABELS_FILE.read_text() == labels_csv(["", "", "bird", "", ""])
        post(server, {"sample_id": 17, "label": "dog"})
        post(server, {"sample_id": 8, "label": "cat"})
        assert LABELS_FILE.read_text() == labels_csv(["dog", "", "bird", "", "cat"])
        # Relabel, then clear.
        post(server, {"sample_id": 250, "label": "fish"})
        status, body = post(server, {"sample_id": 17, "label": ""})
        assert (status, json.loads(body)["labeled"]) == (200, 2)
        assert LABELS_FILE.read_text() == labels_csv(["", "", "fish", "", "cat"])
        state = json.loads(call(server.url + "state")[1])
        assert [s["label"] for s in state["samples"]] == ["", "", "fish", "", "cat"]
        assert state["classes"] == CLASSES and state["keys"] == ["1", "2", "3", "4"]
    assert not list(LABELS_FILE.parent.glob(".*.tmp"))


def test_unknown_classes_and_samples_are_refused(batch):
    with LabelingServer(batch, port=0) as server:
        for payload in (
            {"sample_id": 17, "label": "horse"},
            {"sample_id": 999, "label": "cat"},
            {"sample_id": "17", "label": "cat"},
            {"sample_id": 17, "label": 1},
            {"sample_id": 17},
            ["not", "an", "object"],
        ):
            status, body = post(server, payload)
            assert status == 400, payload
            assert json.loads(body)["error"]
        status, _ = call(server.url + "unlabel", {"sample_id": 17, "label": "cat"})
        assert status == 404
    assert not LABELS_FILE.exists()


def test_labeling_resumes_from_an_existing_labels_file(batch):
    LABELS_FILE.parent.mkdir(parents=True)
    LABELS_FILE.write_text(labels_csv(["cat", "", "", "fish", ""]))
    with LabelingServer(batch, port=0) as server:
        state = json.loads(call(server.url + "state")[1])
        assert [s["label"] for s in state["samples"]] == ["cat", "", "", "fish", ""]
        post(server, {"sample_id": 3, "label": "dog"})
    assert LABELS_FILE.read_text() == labels_csv(["cat", "dog", "", "fish", ""])


def test_a_mismatching_labels_file_is_refused_naming_the_row(batch):
    LABELS_FILE.parent.mkdir(parents=True)
    wrong_path = labels_csv(["", "", "", "", ""]).replace("pool/yellow.jpg", "pool/other.jpg")
    LABELS_FILE.write_text(wrong_path)
    with pytest.raises(LabelingError, match=r"labels\.csv: row 5: sample 8 has path 'pool/o"):
        LabelingServer(batch, port=0)
    LABELS_FILE.write_text(labels_csv(["cat", "", "", "horse", ""]))
    with pytest.raises(LabelingError, match=r"labels\.csv: row 4: unknown class 'horse'"):
        LabelingServer(batch, port=0)
    LABELS_FILE.write_text(labels_csv(["cat", "", "", "", ""]) + "999,pool/x.png,cat\n")
    with pytest.raises(LabelingError, match=r"row 6: sample 999 was not asked for"):
        LabelingServer(batch, port=0)
    # Refusing never rewrites the human's file.
    assert LABELS_FILE.read_text().count("\n") == 7


def test_only_the_requests_images_are_served(batch):
    with LabelingServer(batch, port=0) as server:
        status, png = call(server.url + "image/17")
        assert status == 200
        image = Image.open(io.BytesIO(png))
        # 30x20 fitted into THUMBNAIL_SIZE, aspect kept.
        assert image.size == (THUMBNAIL_SIZE, round(20 * THUMBNAIL_SIZE / 30))
        assert image.convert("RGB").getpixel((5, 5)) == (220, 30, 30)
        for path in ("image/999", "image/..%2F..%2Fetc%2Fpasswd", "image/-1", "pool/yellow.jpg"):
            assert call(server.url + path)[0] == 404, path
        # Requests naming another host (DNS rebinding) are refused.
        assert call(server.url + "state", host="attacker.example:80")[0] == 403


def test_an_unreadable_image_is_reported_not_served(batch, tmp_path):
    (tmp_path / IMAGES[4][0]).write_bytes(b"\xff\xd8 truncated")
    with LabelingServer(batch, port=0) as server:
        status, body = call(server.url + "image/8")
    assert status == 500 and "pool/yellow.jpg: not a readable image" in json.loads(body)["error"]


def test_a_busy_port_is_a_clear_error(batch):
    with LabelingServer(batch, port=0) as server:
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        with pytest.raises(LabelingError, match=f"cannot listen on 127.0.0.1:{port}"):
            LabelingServer(batch, port=port).start()


# ---------------------------------------------------------------- other websites


def raw_request(port: int, data: bytes) -> bytes:
    """Send raw bytes to the server and return its whole answer."""
    with socket.create_connection((HOST, port), timeout=10) as connection:
        connection.sendall(data)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def port_of(server: LabelingServer) -> int:
    return int(server.url.rsplit(":", 1)[1].strip("/"))


def test_the_curl_csrf_request_is_refused(batch):
    """The issue's reproduction: a text/plain POST from another origin, without the token."""
    LABELS_FILE.parent.mkdir(parents=True)
    LABELS_FILE.write_text(labels_csv(["cat", "", "", "", ""]))
    before = LABELS_FILE.read_bytes()
    log = []
    with LabelingServer(batch, port=0, log=log.append) as server:
        connection = http.client.HTTPConnection(HOST, port_of(server), timeout=10)
        body = json.dumps({"sample_id": 17, "label": "dog"})
        headers = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
        connection.request("POST", "/label", body=body, headers=headers)
        response = connection.getresponse()
        assert response.status == 403
        assert json.loads(response.read()) == {
            "error": "requests from http://evil.example are not accepted"
        }
        connection.close()
    assert LABELS_FILE.read_bytes() == before
    assert log == [
        "refused POST /label from 127.0.0.1: requests from http://evil.example are not accepted"
    ]


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        # Each misses one condition; the last is the page's own request, from its own origin.
        ({"Content-Type": "text/plain", "token": True}, 415, "the body must be application/json"),
        (
            {"Content-Type": "application/json"},
            403,
            "missing or wrong X-Tavaal-Token; use the page",
        ),
        (
            {"Content-Type": "application/json", "X-Tavaal-Token": "guessed"},
            403,
            "missing or wrong X-Tavaal-Token; use the page",
        ),
        (
            {"Content-Type": "application/json", "Origin": "null", "token": True},
            403,
            "requests from null are not accepted",
        ),
        (
            {"Content-Type": "application/json", "Origin": "http://127.0.0.1:1", "token": True},
            403,
            "requests from http://127.0.0.1:1 are not accepted",
        ),
        (
            {"Content-Type": "application/json; charset=utf-8", "own origin": True, "token": True},
            200,
            None,
        ),
    ],
)
def test_a_post_needs_the_token_json_and_no_foreign_origin(batch, headers, status, error):
    LABELS_FILE.parent.mkdir(parents=True)
    LABELS_FILE.write_text(labels_csv(["cat", "", "", "", ""]))
    before = LABELS_FILE.read_bytes()
    with LabelingServer(batch, port=0, log=lambda line: None) as server:
        headers = dict(headers)
        if headers.pop("token", False):
            headers["X-Tavaal-Token"] = server.token
        if headers.pop("own origin", False):
            headers["Origin"] = server.url.rstrip("/")
        connection = http.client.HTTPConnection(HOST, port_of(server), timeout=10)
        body = json.dumps({"sample_id": 17, "label": "dog"})
        connection.request("POST", "/label", body=body, headers=headers)
        response = connection.getresponse()
        reply = json.loads(response.read())
        connection.close()
    assert response.status == status
    if error is None:
        assert LABELS_FILE.read_text() == labels_csv(["dog", "", "", "", ""])
    else:
        assert reply == {"error": error}
        assert LABELS_FILE.read_bytes() == before


def test_only_the_served_page_holds_the_token(batch):
    with LabelingServer(batch, port=0) as first, LabelingServer(batch, port=0) as second:
        assert page_token(first.url) == first.token
        assert page_token(second.url) == second.token
        assert len(first.token) >= 32 and first.token != second.token
        # The state and the images do not carry it.
        assert first.token.encode() not in call(first.url + "state")[1]


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /image/\xb2 HTTP/1.1",  # Latin-1 superscript two: a "digit" int() cannot read
        b"GET /image/\xff\xfe HTTP/1.1",
        b"GET /\xe9tat HTTP/1.1",
        b"POST /label\x01 HTTP/1.1",
    ],
)
def test_a_malformed_path_is_a_400_and_one_log_line(batch, capfd, request_line):
    log = []
    with LabelingServer(batch, port=0, log=log.append) as server:
        answer = raw_request(port_of(server), request_line + b"\r\nHost: 127.0.0.1\r\n\r\n")
        # The server still serves after it.
        assert call(server.url + "state")[0] == 200
    assert answer.startswith(b"HTTP/1.0 400 "), answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"error": "malformed request path"}
    assert log == [
        f"refused a malformed request from 127.0.0.1: {request_line.decode('latin-1')!r}"
    ]
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize(
    ("request_line", "status_line"),
    [
        # Without a protocol version the answer has no status line (HTTP/0.9), only the page.
        (b"\xff\xfe garbage", b""),
        (b"GET /a b HTTP/1.1", b"HTTP/1.0 400 "),
    ],
)
def test_a_malformed_request_line_is_a_400_and_one_log_line(
    batch, capfd, request_line, status_line
):
    log = []
    with LabelingServer(batch, port=0, log=log.append) as server:
        answer = raw_request(port_of(server), request_line + b"\r\n\r\n")
    assert answer.startswith(status_line) and b"Error code: 400" in answer, answer
    assert len(log) == 1 and log[0].startswith("refused a request from 127.0.0.1: code 400")
    assert capfd.readouterr().err == ""


# ---------------------------------------------------------------- other editors of the file


@pytest.mark.parametrize(
    ("base", "ours", "theirs", "merged", "conflicts"),
    [
        # The page changed row 1; the file changed row 2: both kept.
        ({}, {1: "cat"}, {2: "dog"}, {1: "cat", 2: "dog"}, []),
        # The file cleared a label the page did not touch: cleared.
        ({1: "cat", 2: "dog"}, {1: "cat", 2: "fish"}, {1: "", 2: "dog"}, {2: "fish"}, []),
        # Both set the same label: no conflict.
        ({}, {1: "cat"}, {1: "cat"}, {1: "cat"}, []),
        # Both changed row 1 differently: the file's value stays, a conflict.
        ({1: "cat"}, {1: "dog"}, {1: "fish"}, {1: "fish"}, [1]),
        ({1: "cat"}, {}, {1: "fish"}, {1: "fish"}, [1]),
        ({1: "cat"}, {1: "dog"}, {}, {}, [1]),
    ],
)
def test_merge_labels(base, ours, theirs, merged, conflicts):
    theirs = {k: v for k, v in theirs.items() if v}
    assert merge_labels(base, ours, theirs) == (merged, conflicts)


def test_an_outside_edit_of_another_row_survives_a_save(batch):
    """The issue's reproduction: a label typed into the file by hand while the page runs."""
    LABELS_FILE.parent.mkdir(parents=True)
    LABELS_FILE.write_text(labels_csv(["cat", "", "", "", ""]))
    with LabelingServer(batch, port=0) as server:
        # A spreadsheet saves the file as "CSV UTF-8", sorted by sample id, with a new label.
        rows = labels_csv(["cat", "", "", "fish", ""]).splitlines(keepends=True)
        LABELS_FILE.write_text(
            "\ufeff" + rows[0] + "".join(sorted(rows[1:], key=lambda r: int(r.split(",")[0]))),
            encoding="utf-8",
        )
        status, body = post(server, {"sample_id": 3, "label": "dog"})
        assert status == 200
        assert json.loads(body)["labels"] == {"17": "cat", "3": "dog", "42": "fish"}
        assert LABELS_FILE.read_text() == labels_csv(["cat", "dog", "", "fish", ""])
        assert [s["label"] for s in server.state()["samples"]] == ["cat", "dog", "", "fish", ""]
        # A second outside edit clears row 1; the page's next save keeps that too.
        LABELS_FILE.write_text(labels_csv(["", "dog", "", "fish", ""]))
        post(server, {"sample_id": 8, "label": "bird"})
    assert LABELS_FILE.read_text() == labels_csv(["", "dog", "", "fish", "bird"])


def test_a_conflicting_outside_edit_is_kept_and_reported(batch):
    log = []
    with LabelingServer(batch, port=0, log=log.append) as server:
        post(server, {"sample_id": 250, "label": "bird"})
        LABELS_FILE.write_text(labels_csv(["cat", "", "fish", "", ""]))
        status, body = post(server, {"sample_id": 250, "label": "dog"})
        assert status == 200
        reply = json.loads(body)
        assert reply["conflicts"] == [{"sample_id": 250, "row": 3, "page": "dog", "file": "fish"}]
        assert reply["labels"] == {"17": "cat", "250": "fish"}
        # The file keeps the outside value (it is not even rewritten) until the person chooses.
        assert LABELS_FILE.read_text() == labels_csv(["cat", "", "fish", "", ""])
        assert log == [
            f"{LABELS_FILE}: row 3 (sample 250) was changed elsewhere to 'fish'; kept it over "
            "the page's 'dog'"
        ]
        # Choosing again replaces it.
        status, body = post(server, {"sample_id": 250, "label": "dog"})
        assert json.loads(body)["conflicts"] == []
    assert LABELS_FILE.read_text() == labels_csv(["cat", "", "dog", "", ""])


def test_an_outside_file_made_invalid_is_not_overwritten(batch):
    with LabelingServer(batch, port=0) as server:
        post(server, {"sample_id": 17, "label": "cat"})
        LABELS_FILE.write_text(labels_csv(["cat", "", "", "horse", ""]))
        before = LABELS_FILE.read_bytes()
        status, body = post(server, {"sample_id": 3, "label": "dog"})
        assert status == 409
        assert json.loads(body)["error"] == (
            f"{LABELS_FILE}: row 4: unknown class 'horse' for sample 42; classes: cat, dog, "
            "bird, fish; fix the file, then label again"
        )
        assert LABELS_FILE.read_bytes() == before
        # Fixed outside, the next save merges as usual.
        LABELS_FILE.write_text(labels_csv(["cat", "", "", "fish", ""]))
        assert post(server, {"sample_id": 3, "label": "dog"})[0] == 200
    assert LABELS_FILE.read_text() == labels_csv(["cat", "dog", "", "fish", ""])


def test_a_deleted_labels_file_is_written_anew(batch):
    with LabelingServer(batch, port=0) as server:
        post(server, {"sample_id": 17, "label": "cat"})
        LABELS_FILE.unlink()
        post(server, {"sample_id": 3, "label": "dog"})
    assert LABELS_FILE.read_text() == labels_csv(["cat", "dog", "", "", ""])


# ---------------------------------------------------------------- one reading of a labels file


def spreadsheet_copy(labels: list[str]) -> str:
    """The labels file as a spreadsheet saves it in "CSV UTF-8": a BOM, rows sorted by sample
    id, spaces around labels and ids."""
    rows = labels_csv(labels).splitlines(keepends=True)
    body = sorted(rows[1:], key=lambda row: int(row.split(",")[0]))
    spaced = [re.sub(r"^(\d+),(.*),(.*)\n", r" \1 ,\2, \3 \n", row) for row in body]
    return "\ufeff" + rows[0] + "".join(spaced)


def test_the_page_and_the_workflow_read_a_spreadsheet_copy_alike(batch):
    LABELS_FILE.parent.mkdir(parents=True)
    LABELS_FILE.write_text(spreadsheet_copy(["cat", "dog", "", "fish", "bird"]), encoding="utf-8")
    request = read_request(batch)
    answers = read_answers(request)
    assert answers.labels == {17: 0, 3: 1, 42: 3, 8: 2}
    assert [s.sample_id for s in answers.missing] == [250]
    assert read_labels(request) == {17: "cat", 3: "dog", 42: "fish", 8: "bird"}
    with LabelingServer(batch, port=0) as server:
        state = json.loads(call(server.url + "state")[1])
    assert [s["label"] for s in state["samples"]] == ["cat", "dog", "", "fish", "bird"]


def test_a_bom_in_to_label_and_in_path_label_csvs_is_accepted(batch, tmp_path):
    to_label = batch.parent / "to_label.csv"
    to_label.write_text("\ufeff" + to_label.read_text(), encoding="utf-8")
    assert [s.sample_id for s in read_request(batch).samples] == SAMPLE_IDS
    test_labels = tmp_path / "test_labels.csv"
    test_labels.write_text("\ufeffpath,label\na/red_wide.png, cat \n", encoding="utf-8")
    assert read_path_labels(test_labels, CLASSES, {"a/red_wide.png"}, "pool") == {
        "a/red_wide.png": 0
    }


# ---------------------------------------------------------------- one image reader


def exif_rotated_jpeg(path: Path) -> None:
    """A 40x20 JPEG, left half red and right half blue, tagged Orientation 6 (turn 90 degrees
    clockwise to show): seen upright it is 20x40, red on top, blue below."""
    image = Image.new("RGB", (40, 20), (220, 30, 30))
    image.paste((30, 30, 220), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=95, exif=exif.tobytes())


def transparent_png(path: Path) -> None:
    """A 20x20 PNG: left half fully transparent (black underneath), right half opaque green."""
    image = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    image.paste((30, 180, 60, 255), (10, 0, 20, 20))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def close(a, b, tolerance: int = 12) -> bool:
    return max(abs(int(x) - int(y)) for x, y in zip(a, b, strict=True)) <= tolerance


def test_the_page_and_the_model_see_the_same_pixels(batch, tmp_path):
    exif_rotated_jpeg(tmp_path / IMAGES[4][0])  # sample 8
    transparent_png(tmp_path / IMAGES[0][0])  # sample 17
    red, blue, green = (220, 30, 30), (30, 30, 220), (30, 180, 60)
    with LabelingServer(batch, port=0) as server:
        rotated = Image.open(io.BytesIO(call(server.url + "image/8")[1])).convert("RGB")
        flattened = Image.open(io.BytesIO(call(server.url + "image/17")[1])).convert("RGB")
    # The page: upright (tall, red on top), transparency on white.
    assert rotated.size == (THUMBNAIL_SIZE // 2, THUMBNAIL_SIZE)
    assert close(rotated.getpixel((40, 10)), red) and close(rotated.getpixel((40, 150)), blue)
    assert flattened.getpixel((10, 80)) == WHITE and close(flattened.getpixel((150, 80)), green)
    # The model: the same picture, shorter side scaled to 20 and centre-cropped.
    model = load_image(tmp_path / IMAGES[4][0], 20)
    assert close(model[1, 10], red) and close(model[18, 10], blue)
    assert close(model[1, 1], red) and close(model[1, 18], red)
    model = load_image(tmp_path / IMAGES[0][0], 20)
    assert tuple(model[10, 2]) == WHITE and close(model[10, 17], green)
    # The contact sheet too.
    out = tmp_path / "sheet.png"
    write_contact_sheet([IMAGES[4][0], IMAGES[0][0]], [8, 17], out, thumb=40, columns=2)
    sheet = Image.open(out)
    x, y = cell_origin(0, thumb=40, columns=2, titled=False)
    assert close(sheet.getpixel((x + 20, y + 3)), red) and close(
        sheet.getpixel((x + 20, y + 37)), blue
    )
    x, y = cell_origin(1, thumb=40, columns=2, titled=False)
    assert sheet.getpixel((x + 5, y + 20)) == WHITE and close(
        sheet.getpixel((x + 35, y + 20)), green
    )


def page_token(url: str) -> str:
    """The token the served page carries (in its tavaal-token meta tag)."""
    status, page = call(url)
    assert status == 200
    match = re.search(rb'<meta name="tavaal-token" content="([^"]+)">', page)
    assert match, "the page carries no token"
    return match.group(1).decode()


# ---------------------------------------------------------------- tavaal label


def test_cli_label_errors_exit_2(batch, capsys):
    assert main(["label", "results/nowhere", "--no-browser"]) == 2
    assert "tavaal: error: results/nowhere: labeling request not found" in (capsys.readouterr().err)


def test_cli_label_serves_until_ctrl_c(batch, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tavaal.cli",
            "label",
            str(batch.parent),
            "--port",
            "0",
            "--no-browser",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("labeling page: http://127.0.0.1:"), first
        url = first.split(": ", 1)[1].strip()
        assert process.stdout.readline().startswith(f"labels file: {LABELS_FILE} (0 of 5")
        token = page_token(url)
        assert call(url + "label", {"sample_id": 42, "label": "cat"}, token=token)[0] == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "1 of 5 labeled" in out and not err
    assert LABELS_FILE.read_text() == labels_csv(["", "", "", "cat", ""])


# ---------------------------------------------------------------- the page in Chromium

REQUIRE_ENV = "TAVAAL_REQUIRE_CHROMIUM"


@pytest.fixture
def chromium_available() -> None:
    reason = chromium_missing()
    if reason is not None:
        if os.environ.get(REQUIRE_ENV, "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{REQUIRE_ENV} is set but {reason}", pytrace=False)
        pytest.skip(reason)


def wait_until(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)
    return value


def test_keyboard_labeling_in_chromium(batch, chromium_available):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from tavaal.labeling.screenshot import wait_for_page

    with LabelingServer(batch, port=0) as server:
        driver = headless_chromium(1000, 700)
        try:
            driver.get(server.url)
            wait_for_page(driver)
            progress = driver.find_element(By.ID, "progress")
            assert progress.text == "labeled 0 of 5"
            current = driver.find_element(By.CSS_SELECTOR, ".cell.current")
            assert current.get_attribute("id") == "cell-17"
            # '2' labels row 1 dog; '1' labels row 2 cat; skip row 3; '3' labels row 4 bird.
            ActionChains(driver).send_keys("2", "1", Keys.ARROW_RIGHT, "3").perform()
            wait_for_page(driver)
            expected = labels_csv(["dog", "cat", "", "bird", ""])
            wait_until(lambda: LABELS_FILE.exists() and LABELS_FILE.read_text() == expected)
            assert progress.text == "labeled 3 of 5"
            # After labeling row 4 the cursor moved to the next unlabeled row, 5.
            current = driver.find_element(By.CSS_SELECTOR, ".cell.current")
            assert current.get_attribute("id") == "cell-8"
            assert not driver.find_element(By.ID, "done").is_displayed()

            driver.refresh()
            wait_for_page(driver)
            assert driver.find_element(By.ID, "progress").text == "labeled 3 of 5"
            # Resumed at the first unlabeled row; Backspace clears, a click selects.
            current = driver.find_element(By.CSS_SELECTOR, ".cell.current")
            assert current.get_attribute("id") == "cell-250"
            driver.find_element(By.ID, "cell-3").click()
            ActionChains(driver).send_keys(Keys.BACKSPACE).perform()
            wait_for_page(driver)
            expected = labels_csv(["dog", "", "", "bird", ""])
            wait_until(lambda: LABELS_FILE.read_text() == expected)
            # Label the rest: the page says it is done.
            ActionChains(driver).send_keys("4", "4", "4").perform()
            wait_for_page(driver)
            wait_until(
                lambda: (
                    LABELS_FILE.read_text() == labels_csv(["dog", "fish", "fish", "bird", "fish"])
                )
            )
            done = driver.find_element(By.ID, "done")
            assert done.is_displayed() and "rerun snakemake" in done.text
            assert driver.find_element(By.ID, "progress").text == "labeled 5 of 5"
        finally:
            driver.quit()


def test_screenshot_has_the_requested_size(batch, tmp_path, chromium_available):
    out = tmp_path / "docs" / "labeling.png"
    screenshot_page(batch, out, keys="12", width=640, height=480)
    assert Image.open(out).size == (640, 480)
    assert LABELS_FILE.read_text() == labels_csv(["cat", "dog", "", "", ""])


def serve_attacker_page(html: str) -> ThreadingHTTPServer:
    """Another website, on a second local port, serving `html` at /."""

    class Attacker(BaseHTTPRequestHandler):
        def log_message(self, format, *args) -> None:
            pass

        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer((HOST, 0), Attacker)
    threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return httpd


def test_a_cross_origin_form_cannot_label_in_chromium(batch, chromium_available):
    """The issue's reproduction: a page on another origin auto-submits a text/plain form whose
    field name carries the JSON body."""
    LABELS_FILE.parent.mkdir(parents=True)
    LABELS_FILE.write_text(labels_csv(["cat", "", "", "", ""]))
    before = LABELS_FILE.read_bytes()
    log = []
    with LabelingServer(batch, port=0, log=log.append) as server:
        field = json.dumps({"sample_id": 17, "label": "dog", "padding": ""})[:-2]
        html = (
            f'<form id="attack" method="POST" action="{server.url}label" enctype="text/plain">'
            f"<input name='{field}' value='\"}}'></form>"
            '<script>document.getElementById("attack").submit()</script>'
        )
        attacker = serve_attacker_page(html)
        driver = headless_chromium(800, 600)
        try:
            driver.get(f"http://{HOST}:{attacker.server_address[1]}/")
            wait_until(lambda: driver.current_url == server.url + "label")
            wait_until(lambda: "not accepted" in driver.page_source)
        finally:
            driver.quit()
            attacker.shutdown()
            attacker.server_close()
    assert LABELS_FILE.read_bytes() == before
    origin = f"http://{HOST}:{attacker.server_address[1]}"
    assert log == [f"refused POST /label from 127.0.0.1: requests from {origin} are not accepted"]


def test_the_page_shows_outside_edits_and_conflicts_in_chromium(batch, chromium_available):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from tavaal.labeling.screenshot import wait_for_page

    with LabelingServer(batch, port=0, log=lambda line: None) as server:
        driver = headless_chromium(1000, 700)
        try:
            driver.get(server.url)
            wait_for_page(driver)
            # Row 1 labeled on the page; then someone sets row 1 to fish and row 4 to bird in
            # the file; the page labels row 1 again (conflict) and moves on.
            ActionChains(driver).send_keys("1").perform()
            wait_for_page(driver)
            LABELS_FILE.write_text(labels_csv(["fish", "", "", "bird", ""]))
            driver.find_element(By.ID, "cell-17").click()
            ActionChains(driver).send_keys("2").perform()
            wait_for_page(driver)
            conflicts = driver.find_element(By.ID, "conflicts")
            assert conflicts.is_displayed()
            assert conflicts.text == (
                'Row 1 (id 17) was changed in the labels file elsewhere to "fish" while you '
                'chose "dog": the file keeps "fish"; choose again to replace it.'
            )
            labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".cell .label")]
            assert labels == ["fish", "", "", "bird", ""]
            assert LABELS_FILE.read_text() == labels_csv(["fish", "", "", "bird", ""])
            # Choosing again wins; the notice goes.
            driver.find_element(By.ID, "cell-17").click()
            ActionChains(driver).send_keys("2").perform()
            wait_for_page(driver)
            wait_until(lambda: LABELS_FILE.read_text() == labels_csv(["dog", "", "", "bird", ""]))
            assert not driver.find_element(By.ID, "conflicts").is_displayed()
            assert driver.find_element(By.ID, "progress").text == "labeled 2 of 5"
        finally:
            driver.quit()


def test_a_reloaded_page_shows_outside_edits(batch):
    with LabelingServer(batch, port=0) as server:
        post(server, {"sample_id": 17, "label": "cat"})
        LABELS_FILE.write_text(spreadsheet_copy(["cat", "", "", "fish", ""]), encoding="utf-8")
        state = json.loads(call(server.url + "state")[1])
        assert [s["label"] for s in state["samples"]] == ["cat", "", "", "fish", ""]
        # Reading does not rewrite the other editor's file.
        assert LABELS_FILE.read_text(encoding="utf-8").startswith("\ufeff")
        # An unreadable file leaves the page as it was.
        LABELS_FILE.write_text(labels_csv(["horse", "", "", "", ""]))
        state = json.loads(call(server.url + "state")[1])
        assert [s["label"] for s in state["samples"]] == ["cat", "", "", "fish", ""]
