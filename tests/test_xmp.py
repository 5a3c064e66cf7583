"""Safe XMP parsing and the minimal keyword edit: prefixes, attributes, structure and wrapper survive."""

from __future__ import annotations

from pathlib import Path

import pytest

from landmark_tagger import metadata, xmp
from landmark_tagger.errors import MetadataError
from landmark_tagger.keywords import KeywordEdit

SIDECARS = Path(__file__).parent / "corpus" / "sidecars"

ODD = b"""<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Some Tool 1.0">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <!-- a comment another tool left -->
  <rdf:Description rdf:about="uuid:1234"
    xmlns:DC="http://purl.org/dc/elements/1.1/"
    xmlns:xap="http://ns.adobe.com/xap/1.0/"
    xap:Rating='3' xap:Label="a &amp; b &#x9;tab">
   <DC:subject>
    <rdf:Bag>
     <rdf:li>kept</rdf:li>
    </rdf:Bag>
   </DC:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="r"?>"""


def _edit(**kw) -> KeywordEdit:
    return KeywordEdit(**kw)


def test_document_prefixes_attributes_comments_and_about_survive():
    out = metadata.rewrite_sidecar(ODD, _edit(add_flat=["Taj Mahal"], add_hier=["Landmarks|Taj Mahal"]))
    text = out.decode("utf-8")
    # the untouched start tag is byte-identical (attribute form, quote style, character references)
    assert "xap:Rating='3' xap:Label=\"a &amp; b &#x9;tab\">" in text
    assert 'rdf:about="uuid:1234"' in text and "<!-- a comment another tool left -->" in text
    assert "<DC:subject>" in text and "<rdf:li>Taj Mahal</rdf:li>" in text and "dc:subject" not in text
    assert 'x:xmptk="Some Tool 1.0"' in text
    assert text.startswith('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>')
    assert text.endswith('<?xpacket end="w"?>')
    st = metadata.read_sidecar_keywords(out)
    assert st.flat == ["kept", "Taj Mahal"] and st.hierarchical == ["Landmarks|Taj Mahal"]
    doc = xmp.parse(out)
    assert xmp.get_simple(doc, "http://ns.adobe.com/xap/1.0/", "Label") == "a & b \ttab"


def test_same_uri_with_different_prefixes_in_two_documents():
    a = metadata.rewrite_sidecar(ODD, _edit(add_flat=["x"]))
    b = metadata.rewrite_sidecar((SIDECARS / "captureone_DSC_0003.xmp").read_bytes(), _edit(add_flat=["x"]))
    assert b"<DC:subject>" in a and b"<dc:subject>" in b
    assert b"ns0:" not in a + b


def test_bag_added_as_element_with_its_namespace_when_absent():
    src = (SIDECARS / "acdsee_IMG_0006.xmp").read_bytes()
    out = metadata.rewrite_sidecar(src, _edit(add_flat=["sea"], add_hier=["Places|Bay"], ltag={"Landmark": "Bay"}))
    # the Description start tag is unchanged; new properties are elements
    start = src[src.index(b"<rdf:Description") : src.index(b">", src.index(b'xmp:Rating="4"')) + 1]
    assert start in out
    assert b'<lr:hierarchicalSubject xmlns:lr="http://ns.adobe.com/lightroom/1.0/">' in out
    assert b'<ltag:Landmark xmlns:ltag="http://ns.ltag.dev/1.0/">Bay</ltag:Landmark>' in out
    assert metadata.read_sidecar_keywords(out).ltag == {"Landmark": "Bay"}


def test_removing_the_last_keyword_removes_the_property_and_is_idempotent():
    once = metadata.rewrite_sidecar(ODD, _edit(add_flat=["new"]))
    assert metadata.rewrite_sidecar(once, _edit(add_flat=["new"])) == once
    gone = metadata.rewrite_sidecar(once, _edit(remove_flat=["kept", "new"]))
    assert b"subject" not in gone
    assert metadata.read_sidecar_keywords(gone).flat == []


def test_attribute_form_simple_property_stays_an_attribute():
    src = b"""<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:ltag="http://ns.ltag.dev/1.0/" ltag:Landmark="Old"/></rdf:RDF></x:xmpmeta>"""
    out = metadata.rewrite_sidecar(src, _edit(ltag={"Landmark": "New"}))
    assert b'ltag:Landmark="New"' in out and b"<ltag:Landmark>" not in out


def test_location_only_fills_empty_fields():
    src = (SIDECARS / "photomechanic_DSC_0005.xmp").read_bytes()  # photoshop:City = Rome
    out = metadata.rewrite_sidecar(src, _edit(location={"City": "Agra", "State": "Uttar Pradesh"}))
    doc = xmp.parse(out)
    assert xmp.get_simple(doc, xmp.NS_PHOTOSHOP, "City") == "Rome"
    assert xmp.get_simple(doc, xmp.NS_PHOTOSHOP, "State") == "Uttar Pradesh"


def test_packet_keeps_its_size_when_padding_allows():
    packet = xmp.to_bytes(xmp.new_doc(sidecar=False), default_pad=4000)
    doc = xmp.parse(packet)
    ed = xmp.XmpEditor(doc)
    ed.edit_bag(xmp.NS_DC, "subject", ["a", "b"], [])
    out = xmp.to_bytes(doc, pad_to=len(packet))
    assert len(out) == len(packet) and out.endswith(b'<?xpacket end="w"?>')
    assert xmp.get_bag(xmp.parse(out), xmp.NS_DC, "subject") == ["a", "b"]


def test_new_sidecar_is_valid_and_names_ltag():
    out = metadata.rewrite_sidecar(None, _edit(add_flat=["Taj Mahal"], owned=["Taj Mahal"]))
    assert out.startswith(b'<?xml version="1.0" encoding="UTF-8"?>') and b"ltag XMP writer" in out
    st = metadata.read_sidecar_keywords(out)
    assert st.flat == ["Taj Mahal"] and st.owned == ["Taj Mahal"]


@pytest.mark.parametrize(
    "name",
    [
        "malformed_entity_bomb.xmp",
        "malformed_external_entity.xmp",
        "malformed_truncated.xmp",
        "malformed_binary.xmp",
        "malformed_no_rdf.xmp",
    ],
)
def test_unsafe_or_broken_packets_raise(name):
    with pytest.raises(MetadataError):
        xmp.parse((SIDECARS / name).read_bytes())


def test_internal_entity_without_dtd_is_refused_too():
    src = b'<!DOCTYPE x [<!ENTITY a "b">]><x:xmpmeta xmlns:x="adobe:ns:meta/"/>'
    with pytest.raises(MetadataError, match="safety"):
        xmp.parse(src)


def test_crlf_sidecar_keeps_its_line_ends_and_multiline_values():
    src = (SIDECARS / "windows_crlf_IMG_0013.xmp").read_bytes()
    out = metadata.rewrite_sidecar(src, _edit(add_flat=["beach"]))
    assert out.count(b"\n") == out.count(b"\r\n")
    assert b"First line of the caption\r\nsecond line, written on Windows" in out
    assert metadata.read_sidecar_keywords(out).flat == ["family", "beach"]


def test_character_reference_carriage_return_survives():
    src = b"""<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:format>a&#xD;b</dc:format></rdf:Description>
</rdf:RDF></x:xmpmeta>"""
    out = metadata.rewrite_sidecar(src, _edit(add_flat=["x"]))
    assert b"<dc:format>a&#xD;b</dc:format>" in out


def test_nul_padding_after_the_packet_is_treated_as_padding():
    packet = xmp.to_bytes(xmp.new_doc(sidecar=False), default_pad=100) + b"\x00" * 300
    doc = xmp.parse(packet)
    xmp.XmpEditor(doc).edit_bag(xmp.NS_DC, "subject", ["a"], [])
    out = xmp.to_bytes(doc, pad_to=len(packet))
    assert len(out) == len(packet) and b"\x00" not in out
