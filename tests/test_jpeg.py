"""JPEG marker parsing and splicing on real camera files and hand-made edge cases."""

from __future__ import annotations

import io
import struct

import pytest
from conftest import camera_file
from PIL import Image

from landmark_tagger import jpeg, metadata
from landmark_tagger.errors import MetadataError, MetadataWriteError
from landmark_tagger.keywords import KeywordEdit

CAMERA_JPEGS = [
    "canon_5d3__K6A7946.JPG",
    "canon_g2_IMG_0308.JPG",
    "nikon_d90_DSC_0003.JPG",
    "nikon_d3100_DSC_0008.JPG",
    "nikon_e995_DSCN1325.JPG",
]


def _other_segments(data: bytes) -> list[bytes]:
    """Every header segment ltag must never change, in order."""
    layout = jpeg.parse(data)
    return [data[s.start : s.end] for s in layout.segments if jpeg.segment_kind(s, data) not in ("xmp", "photoshop")]


@pytest.mark.parametrize("name", CAMERA_JPEGS)
def test_real_files_parse_and_splice_touches_only_xmp_and_app13(name):
    data = camera_file(name).read_bytes()
    layout = jpeg.parse(data)
    assert data[layout.header_end : layout.header_end + 2] == b"\xff\xda"
    assert layout.segments[0].start == 2
    for a, b in zip(layout.segments, layout.segments[1:], strict=False):
        assert a.end == b.start  # contiguous: every header byte belongs to a segment
    new = metadata.rewrite_jpeg(data, KeywordEdit(add_flat=["Taj Mahal"], add_hier=["Landmarks|Taj Mahal"]))
    assert new != data
    assert _other_segments(new) == _other_segments(data)
    assert new[jpeg.jpeg_header_end(new) :] == data[layout.header_end :]
    kinds = [jpeg.segment_kind(s, new) for s in jpeg.parse(new).segments]
    # new segments go after APP0/APP1-Exif, never before them
    assert kinds.index("xmp") > kinds.index("exif") and kinds.index("photoshop") > kinds.index("exif")
    st = metadata.read_jpeg_keywords(new)
    assert st.flat == ["Taj Mahal"] and st.hierarchical == ["Landmarks|Taj Mahal"]


def test_fill_bytes_before_markers_are_kept():
    data = camera_file("canon_g2_IMG_0308.JPG").read_bytes()
    layout = jpeg.parse(data)
    dqt = next(s for s in layout.segments if s.marker == 0xDB)
    padded = data[: dqt.start] + b"\xff\xff\xff" + data[dqt.start :]
    assert jpeg.jpeg_header_end(padded) == layout.header_end + 3
    new = metadata.rewrite_jpeg(padded, KeywordEdit(add_flat=["x"]))
    assert b"\xff\xff\xff\xff\xdb" in new[: jpeg.jpeg_header_end(new)]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d[:1000], "truncated"),
        (lambda d: d[:3], "SOI"),
        (lambda d: b"GIF89a" + d[6:], "SOI"),
        (lambda d: d[:2] + b"\xff\xd9" + d[2:], "EOI"),
        (lambda d: d[:2] + b"\x00garbage" + d[2:], "marker"),
        (lambda d: d[:2] + b"\xff\xe1\x00\x01" + d[2:], "length"),
        (lambda d: b"", "SOI"),
    ],
)
def test_broken_headers_raise(mutate, message):
    data = mutate(camera_file("canon_g2_IMG_0308.JPG").read_bytes())
    with pytest.raises(MetadataError, match=message):
        jpeg.parse(data)
    with pytest.raises(MetadataError):
        metadata.rewrite_jpeg(data, KeywordEdit(add_flat=["x"]))


def test_large_photoshop_block_is_split_and_joined():
    irb = b"8BIM" + struct.pack(">H", 0x0FA0) + b"\x00\x00" + struct.pack(">I", 100_000) + bytes(100_000)
    segs = jpeg.photoshop_segments(irb)
    data = camera_file("canon_g2_IMG_0308.JPG").read_bytes()
    spliced = jpeg.splice(data, None, irb)
    assert jpeg.find_photoshop(spliced) == irb
    assert sum(1 for s in jpeg.parse(spliced).segments if jpeg.segment_kind(s, spliced) == "photoshop") == 2
    assert len(segs) > 100_000


def test_xmp_packet_too_large_is_refused():
    data = camera_file("canon_g2_IMG_0308.JPG").read_bytes()
    with pytest.raises(MetadataWriteError):
        jpeg.splice(data, b" " * (jpeg.MAX_XMP_PACKET + 1), None)
    with pytest.raises(MetadataWriteError):
        metadata.rewrite_jpeg(data, KeywordEdit(add_flat=[f"keyword {i:05d}" for i in range(4000)]))


def test_mpf_offsets_follow_a_growing_segment(tmp_path):
    with Image.open(camera_file("canon_g2_IMG_0308.JPG")) as im:
        left = im.convert("RGB").resize((160, 120))
    right = left.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>'
    buf = io.BytesIO()
    left.save(buf, "MPO", save_all=True, append_images=[right], xmp=xmp)
    data = buf.getvalue()
    kinds = [jpeg.segment_kind(s, data) for s in jpeg.parse(data).segments]
    assert kinds.index("mpf") < kinds.index("xmp")  # the XMP grows after the MPF index
    new = metadata.rewrite_jpeg(data, KeywordEdit(add_flat=["k" * 50 + str(i) for i in range(40)]))
    assert len(new) > len(data) + 2000

    def second_frame(b: bytes) -> bytes:
        with Image.open(io.BytesIO(b)) as im:
            im.seek(1)
            return im.tobytes()

    assert second_frame(new) == second_frame(data)


def test_no_op_edit_returns_the_same_bytes():
    data = camera_file("nikon_d90_DSC_0003.JPG").read_bytes()
    assert metadata.rewrite_jpeg(data, KeywordEdit()) is data
    once = metadata.rewrite_jpeg(data, KeywordEdit(add_flat=["a"]))
    assert metadata.rewrite_jpeg(once, KeywordEdit(add_flat=["a"])) == once


@pytest.mark.parametrize("name", CAMERA_JPEGS)
def test_head_only_rewrite_with_kernel_tail_copy_equals_whole_file_rewrite(name, tmp_path):
    from landmark_tagger import fsutil

    data = camera_file(name).read_bytes()
    path = tmp_path / name
    path.write_bytes(data)
    edit = KeywordEdit(add_flat=["Taj Mahal", "Agra"], add_hier=["Landmarks|Taj Mahal"], owned=["Taj Mahal"])
    with open(path, "rb") as f:
        head = metadata.read_jpeg_head(f, chunk=4096)
        assert head == data[: jpeg.jpeg_header_end(data) + 2]
        assert metadata.read_jpeg_keywords(head) == metadata.read_jpeg_keywords(data)
        fsutil.atomic_write(path, metadata.rewrite_jpeg(head, edit), tail_from=(f.fileno(), len(head)))
    assert path.read_bytes() == metadata.rewrite_jpeg(data, edit)


def test_read_jpeg_head_refuses_files_without_image_data():
    data = camera_file("canon_g2_IMG_0308.JPG").read_bytes()
    with pytest.raises(MetadataError, match="truncated"):
        metadata.read_jpeg_head(io.BytesIO(data[:5000]))
    with pytest.raises(MetadataError, match="SOI"):
        metadata.read_jpeg_head(io.BytesIO(b"not a jpeg at all"))


def test_old_photoshop_25_iptc_block_is_not_duplicated():
    data = camera_file("canon_g2_IMG_0308.JPG").read_bytes()
    payload = b"Adobe_Photoshop2.5:" + b"\x1c\x02\x00\x00\x02\x00\x04"
    old = data[:2] + b"\xff\xed" + (len(payload) + 2).to_bytes(2, "big") + payload + data[2:]
    with pytest.raises(MetadataWriteError, match="Photoshop 2.5"):
        metadata.rewrite_jpeg(old, KeywordEdit(add_flat=["x"]))
