"""fsutil: atomic replace, permission bits (same for root and users), hashing, stale temp cleanup, signals."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from landmark_tagger import fsutil


def test_atomic_write_replaces_and_keeps_mode(tmp_path):
    p = tmp_path / "a.jpg"
    p.write_bytes(b"old")
    os.chmod(p, 0o640)
    fsutil.atomic_write(p, b"new content")
    assert p.read_bytes() == b"new content"
    assert stat.S_IMODE(p.stat().st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["a.jpg"]  # no temp file left


def test_atomic_write_creates_new_file(tmp_path):
    p = tmp_path / "new.xmp"
    fsutil.atomic_write(p, b"<x/>")
    assert p.read_bytes() == b"<x/>"
    assert sorted(os.listdir(tmp_path)) == ["new.xmp"]


def test_atomic_write_keep_mtime(tmp_path):
    p = tmp_path / "a.jpg"
    p.write_bytes(b"old")
    os.utime(p, ns=(1_500_000_000_000_000_000, 1_500_000_000_123_456_789))
    fsutil.atomic_write(p, b"new", keep_mtime=True)
    assert p.stat().st_mtime_ns == 1_500_000_000_123_456_789
    fsutil.atomic_write(p, b"newer")
    assert p.stat().st_mtime_ns != 1_500_000_000_123_456_789


def test_atomic_write_failure_leaves_original_and_no_temp(tmp_path, monkeypatch):
    p = tmp_path / "a.jpg"
    p.write_bytes(b"original")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsutil.os, "replace", boom)
    with pytest.raises(OSError):
        fsutil.atomic_write(p, b"x" * 1000)
    assert p.read_bytes() == b"original"
    assert sorted(os.listdir(tmp_path)) == ["a.jpg"]


def test_temp_names_are_recognised_and_only_ltag_ones_removed(tmp_path):
    t = fsutil.temp_path_for(str(tmp_path / "DSC_0001.JPG"))
    name = os.path.basename(t)
    assert fsutil.is_ltag_temp(name)
    for other in (".DSC_0001.JPG.ltag-tmp-xyz", "DSC_0001.JPG", "._DSC_0001.JPG", ".hidden", "a.ltag-tmp-0123456789ab"):
        assert not fsutil.is_ltag_temp(other), other
    (tmp_path / name).write_bytes(b"partial")
    (tmp_path / ".DSC_0001.JPG.ltag-tmp-xyz").write_bytes(b"not ours")
    (tmp_path / "DSC_0001.JPG").write_bytes(b"photo")
    removed = fsutil.remove_stale_temps(str(tmp_path))
    assert removed == [t]
    assert sorted(os.listdir(tmp_path)) == [".DSC_0001.JPG.ltag-tmp-xyz", "DSC_0001.JPG"]


def test_permission_bits_decide_read_only(tmp_path):
    """Decided by bits, not by access(): running as root (CI) gives the same answer as a user."""
    p = tmp_path / "a.jpg"
    p.write_bytes(b"x")
    assert fsutil.is_writable_by_bits(p)
    os.chmod(p, 0o444)
    assert not fsutil.is_writable_by_bits(p)
    assert "read-only" in fsutil.write_block_reason(p)
    os.chmod(p, 0o644)
    os.chmod(tmp_path, 0o555)
    try:
        assert "folder is read-only" in fsutil.write_block_reason(p)
        assert not fsutil.is_writable_by_bits(tmp_path / "new.xmp")  # creating a sidecar needs the folder
    finally:
        os.chmod(tmp_path, 0o755)
    assert fsutil.is_writable_by_bits(tmp_path / "new.xmp")


def test_read_bits(tmp_path):
    p = tmp_path / "a.jpg"
    p.write_bytes(b"x")
    assert fsutil.read_block_reason(p) is None
    os.chmod(p, 0o000)
    try:
        assert "not readable" in fsutil.read_block_reason(p)
    finally:
        os.chmod(p, 0o644)


def test_sha256_file_streams(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)
    p = tmp_path / "big.bin"
    p.write_bytes(data)
    assert fsutil.sha256_file(p) == hashlib.sha256(data).hexdigest() == fsutil.sha256_bytes(data)


def test_content_hash_is_xxh3_128_and_streams(tmp_path):
    import xxhash

    data = os.urandom(3 * (1 << 20) + 17)
    p = tmp_path / "big.bin"
    p.write_bytes(data)
    h = fsutil.content_hash(data)
    assert len(h) == 32 and h == xxhash.xxh3_128(data).hexdigest() == fsutil.content_hash_file(p)
    assert fsutil.content_hash(memoryview(data)) == h
    assert fsutil.content_hash(data[:-1]) != h


def test_hash_matches_checks_new_and_sha256_values_with_their_own_algorithm(tmp_path):
    data = b"\xff\xd8 some photo bytes"
    p = tmp_path / "a.jpg"
    p.write_bytes(data)
    new, old = fsutil.content_hash(data), hashlib.sha256(data).hexdigest()
    for recorded in (new, old):
        assert fsutil.hash_matches(recorded, data) and fsutil.file_hash_matches(recorded, p)
        assert not fsutil.hash_matches(recorded, data + b"!")
        assert fsutil.hash_like(recorded, data) == recorded == fsutil.file_hash_like(recorded, p)
        h = fsutil.hasher_for(recorded)
        h.update(data)
        assert h.hexdigest() == recorded
    assert fsutil.hash_like(None, data) == new
    assert not fsutil.hash_matches(None, data) and not fsutil.file_hash_matches("", p)


def test_noop_fileops_touches_nothing(tmp_path):
    p = tmp_path / "a.jpg"
    p.write_bytes(b"old")
    ops = fsutil.NoOpFileOps()
    ops.atomic_write(str(p), b"new")
    ops.remove(str(p))
    assert p.read_bytes() == b"old"
    assert ops.log == [("write", str(p), 3), ("remove", str(p), 0)]


def test_sigint_during_replace_is_deferred_until_after_it(tmp_path):
    """A SIGINT arriving inside the critical section is delivered after the replace: the file is complete."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        from landmark_tagger import fsutil
        # A child of a background job starts with SIGINT ignored (POSIX shells do that for `cmd &`); Python
        # then installs no KeyboardInterrupt handler. This test is about deferral, so start from Python's own.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        real_replace = os.replace
        def replace(src, dst):
            os.kill(os.getpid(), signal.SIGINT)   # arrives mid-section
            real_replace(src, dst)
        fsutil.os.replace = replace
        try:
            fsutil.atomic_write({str(tmp_path / 'a.jpg')!r}, b"new" * 1000)
        except KeyboardInterrupt:
            print("interrupted-after", open({str(tmp_path / 'a.jpg')!r}, "rb").read() == b"new" * 1000)
            sys.exit(0)
        print("no-interrupt")
    """)
    (tmp_path / "a.jpg").write_bytes(b"old")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "interrupted-after True", out.stderr
    assert sorted(os.listdir(tmp_path)) == ["a.jpg"]


def test_deferred_signals_restores_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with fsutil.deferred_signals():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
