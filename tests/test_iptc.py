"""Photoshop IRB + IPTC IIM: other blocks byte-identical, record order, charset, 64-byte cut, digest."""

from __future__ import annotations

import hashlib
import struct

from landmark_tagger import iptc


def ds(rec: int, num: int, value: bytes) -> bytes:
    return bytes((0x1C, rec, num)) + struct.pack(">H", len(value)) + value


def res(rid: int, data: bytes, name: bytes = b"\x00\x00") -> bytes:
    return iptc.build_resource(b"8BIM", rid, name, data)


RESOLUTION = res(0x03ED, bytes(range(16)))
ODD_NAMED = res(0x0FA1, b"odd", name=b"\x03abc")  # odd-length data and a pascal name, both padded


def block(*datasets: bytes) -> bytes:
    return b"".join(datasets)


def resources(irb: bytes) -> dict[int, bytes]:
    return {r.rid: r.data for r in iptc.parse_irb(irb)}


def test_other_resources_are_byte_identical_and_in_order():
    old_iim = block(ds(2, 0, b"\x00\x04"), ds(2, 25, b"old"))
    irb = RESOLUTION + res(0x0404, old_iim) + ODD_NAMED
    new = iptc.edit_irb(irb, ["Taj Mahal"], [], None)
    parsed = iptc.parse_irb(new)
    assert [r.rid for r in parsed] == [0x03ED, 0x0404, 0x0FA1]
    assert parsed[0].raw == RESOLUTION and parsed[2].raw == ODD_NAMED
    assert iptc.read_keywords(new) == ["old", "Taj Mahal"]


def test_record_order_kept_and_keywords_go_after_keywords():
    iim = block(ds(1, 0, b"\x00\x04"), ds(2, 0, b"\x00\x04"), ds(2, 5, b"Title"), ds(2, 25, b"a"), ds(2, 120, b"Cap"))
    out = iptc.parse_iim(iptc.edit_iim(iim, ["b"], [], None))
    assert [(d.record, d.number, d.value) for d in out] == [
        (1, 0, b"\x00\x04"),
        (2, 0, b"\x00\x04"),
        (2, 5, b"Title"),
        (2, 25, b"a"),
        (2, 25, b"b"),
        (2, 120, b"Cap"),
    ]


def test_ascii_keywords_leave_a_latin1_block_alone():
    iim = block(ds(2, 0, b"\x00\x04"), ds(2, 120, "Café".encode("cp1252")))
    out = iptc.parse_iim(iptc.edit_iim(iim, ["Agra"], [], None))
    assert not any(d.record == 1 and d.number == 90 for d in out)
    assert next(d for d in out if d.number == 120).value == "Café".encode("cp1252")


def test_non_ascii_keyword_sets_utf8_and_transcodes_latin1_text():
    iim = block(ds(1, 0, b"\x00\x04"), ds(2, 0, b"\x00\x04"), ds(2, 120, "Été à Montréal".encode("cp1252")))
    out = iptc.parse_iim(iptc.edit_iim(iim, ["Ünïcødé"], [], None))
    assert (out[1].record, out[1].number, out[1].value) == (1, 90, b"\x1b%G")  # in record 1, before record 2
    caption = next(d for d in out if d.number == 120)
    assert caption.value.decode("utf-8") == "Été à Montréal"
    assert iptc.read_keywords(res(0x0404, b"".join(d.raw for d in out))) == ["Ünïcødé"]
    assert out[2].value == b"\x00\x04"  # binary version record untouched


def test_long_keyword_cut_at_a_character_boundary():
    kw = "é" * 40  # 80 bytes
    cut = iptc.cut_keyword(kw)
    assert len(cut) == 64 and cut.decode("utf-8") == "é" * 32
    emoji = "a" + "🏛" * 20  # 1 + 80 bytes: must not end inside a 4-byte character
    assert iptc.cut_keyword(emoji).decode("utf-8") == "a" + "🏛" * 15
    new = iptc.edit_irb(None, [kw], [], None)
    assert iptc.read_keywords(new) == ["é" * 32]
    # removing the whole keyword removes its cut IPTC form
    assert iptc.read_keywords(iptc.edit_irb(new, [], [kw], None)) == []


def test_digest_updated_when_it_matched():
    old = block(ds(2, 0, b"\x00\x04"), ds(2, 25, b"a"))
    irb = res(0x0404, old) + res(0x0425, hashlib.md5(old).digest())
    new = iptc.edit_irb(irb, ["b"], [], None)
    r = resources(new)
    assert r[0x0425] == hashlib.md5(r[0x0404]).digest()


def test_stale_digest_left_as_is_and_absent_digest_not_added():
    old = block(ds(2, 0, b"\x00\x04"), ds(2, 25, b"a"))
    stale = res(0x0404, old) + res(0x0425, b"\x11" * 16)
    assert resources(iptc.edit_irb(stale, ["b"], [], None))[0x0425] == b"\x11" * 16
    assert 0x0425 not in resources(iptc.edit_irb(res(0x0404, old), ["b"], [], None))


def test_new_iptc_block_gets_version_charset_and_digest():
    new = iptc.edit_irb(RESOLUTION, ["Café"], [], None)
    r = resources(new)
    iim = iptc.parse_iim(r[0x0404])
    assert [(d.record, d.number) for d in iim] == [(1, 90), (2, 0), (2, 25)]
    assert r[0x0425] == hashlib.md5(r[0x0404]).digest()
    assert new.startswith(RESOLUTION)


def test_location_filled_only_when_absent():
    iim = block(ds(2, 0, b"\x00\x04"), ds(2, 90, b"Roma"))
    out = iptc.parse_iim(iptc.edit_iim(iim, [], [], {"City": "Agra", "Country": "India"}))
    vals = {(d.number): d.value for d in out}
    assert vals[90] == b"Roma" and vals[101] == b"India"


def test_extended_length_dataset_round_trips():
    big = iptc.make_dataset(2, 202, bytes(40_000))  # preview data > 32767 bytes uses an extended length
    iim = block(ds(2, 0, b"\x00\x04"), big.raw)
    out = iptc.parse_iim(iptc.edit_iim(iim, ["x"], [], None))
    kept = next(d for d in out if d.number == 202)
    assert kept.raw == big.raw and len(kept.value) == 40_000


def test_no_change_returns_none():
    old = block(ds(2, 0, b"\x00\x04"), ds(2, 25, b"a"))
    assert iptc.edit_irb(res(0x0404, old), ["a"], [], None) is None
    assert iptc.edit_irb(None, [], ["a"], None) is None
