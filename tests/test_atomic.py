"""The one atomic writer (`tavaal.atomic`): its rules, tested once for every output."""

from __future__ import annotations

import errno
import os
import threading

import pytest

from tavaal import atomic
from tavaal.atomic import atomic_write, atomic_write_bytes, atomic_write_text


def test_the_new_content_replaces_the_old_whole(tmp_path):
    path = tmp_path / "out.csv"
    path.write_bytes(b"a much longer old content that must not survive in part\n")
    atomic_write_bytes(path, b"new\n")
    assert path.read_bytes() == b"new\n"
    assert sorted(tmp_path.iterdir()) == [path]


def test_text_is_utf8_with_line_endings_as_given(tmp_path):
    path = tmp_path / "labels.csv"
    atomic_write_text(path, "id,label\r\n1,Chat noir é\n")
    assert path.read_bytes() == "id,label\r\n1,Chat noir é\n".encode()


def test_the_folder_is_created_and_the_temporary_file_sits_beside_the_destination(tmp_path):
    path = tmp_path / "results" / "stage1" / "model.pt"
    with atomic_write(path) as tmp:
        assert tmp.parent == path.parent and tmp.parent.is_dir()
        assert tmp.name.startswith(".model.pt.") and tmp.name.endswith(".tmp")
        assert str(os.getpid()) in tmp.name and str(threading.get_ident()) in tmp.name
        tmp.write_bytes(b"weights")
        assert not path.exists()
    assert path.read_bytes() == b"weights"
    assert not tmp.exists()


def test_on_an_exception_the_old_file_is_intact_and_no_temporary_file_is_left(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_bytes(b'{"old": 1}\n')
    with pytest.raises(RuntimeError, match="killed mid-write"):
        with atomic_write(path) as tmp:
            tmp.write_bytes(b'{"new": ')
            raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b'{"old": 1}\n'
    assert sorted(tmp_path.iterdir()) == [path]


def test_on_an_exception_a_missing_destination_stays_missing(tmp_path):
    path = tmp_path / "labeled.parquet"
    with pytest.raises(OSError):
        with atomic_write(path) as tmp:
            tmp.write_bytes(b"half")
            raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_the_file_is_flushed_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    path = tmp_path / "out.bin"
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append(("fsync", os.fstat(descriptor).st_ino))
        real_fsync(descriptor)

    def replace(source, target):
        events.append(("replace", str(target)))
        real_replace(source, target)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    with atomic_write(path) as tmp:
        tmp.write_bytes(b"data")
    # The renamed file is the temporary one: the same inode.
    file, folder = path.stat().st_ino, tmp_path.stat().st_ino
    assert events == [("fsync", file), ("replace", str(path)), ("fsync", folder)]


def test_concurrent_writers_never_share_a_temporary_file(tmp_path):
    path = tmp_path / "labels.csv"
    names, errors = set(), []
    barrier = threading.Barrier(4)

    def write(number: int) -> None:
        try:
            with atomic_write(path) as tmp:
                names.add(tmp.name)
                barrier.wait(timeout=10)
                tmp.write_bytes(f"writer {number}\n".encode())
        except Exception as exc:  # reported below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(names) == 4
    assert path.read_bytes() in {f"writer {n}\n".encode() for n in range(4)}
    assert sorted(tmp_path.iterdir()) == [path]


def test_a_folder_the_file_system_refuses_to_flush_does_not_fail_the_write(tmp_path, monkeypatch):
    path = tmp_path / "out.bin"
    real_fsync = os.fsync
    folder = tmp_path.stat().st_ino

    def fsync(descriptor):
        if os.fstat(descriptor).st_ino == folder:
            raise OSError(errno.EINVAL, "Invalid argument")
        real_fsync(descriptor)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    atomic_write_bytes(path, b"data")
    assert path.read_bytes() == b"data"
    assert sorted(tmp_path.iterdir()) == [path]
