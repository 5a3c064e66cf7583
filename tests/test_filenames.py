"""Safe file names and rename templates."""

from __future__ import annotations

import unicodedata
from datetime import datetime

import pytest

from landmark_tagger.errors import RenameError
from landmark_tagger.filenames import DEFAULT_TEMPLATE, Template, safe_component, truncate_utf8


@pytest.mark.parametrize("text, expected", [
    ("Eiffel Tower", "Eiffel Tower"),
    ("AC/DC Hall", "AC-DC Hall"),
    ("a\\b", "a-b"),
    ("..", "unnamed"),
    (".", "unnamed"),
    ("../../etc/passwd", "-..-etc-passwd"),
    (".hidden", "hidden"),
    ("trailing dots...", "trailing dots"),
    ("trailing space   ", "trailing space"),
    ("CON", "_CON"),
    ("con.txt", "_con.txt"),
    ("LPT1", "_LPT1"),
    ("Console", "Console"),
    ("tab\tand\nnewline", "tab and newline"),
    ("bell\x07null\x00del\x7f", "bellnulldel"),
    ("zero\u200bwidth\u202eRTL", "zerowidthRTL"),
    ('what? <a|b> "c": *', "what ab c"),
    ("", "unnamed"),
    ("   ", "unnamed"),
    (None, "unnamed"),
])
def test_safe_component(text, expected):
    assert safe_component(text) == expected


def test_safe_component_nfc_and_length():
    nfd = unicodedata.normalize("NFD", "Rīga Hallgrímskirkja")
    assert safe_component(nfd) == unicodedata.normalize("NFC", "Rīga Hallgrímskirkja")
    long = "Ā" * 200                      # 2 bytes each
    s = safe_component(long, max_bytes=101)
    assert len(s.encode()) <= 101 and s == "Ā" * 50
    assert truncate_utf8("e\u0301e\u0301", 4) == "e\u0301"   # never cut between a letter and its accent
    assert safe_component("🗼" * 100, max_bytes=10) == "🗼🗼"


def test_template_render():
    t = Template(DEFAULT_TEMPLATE)
    rel = t.render({"landmark": "Sagrada Família", "date": datetime(2019, 5, 1, 10), "seq": 7})
    assert rel == "Sagrada Família/2019-05-01_Sagrada Família_007"
    rel = Template("{country}/{city}/{date:%Y}/{stem}_{camera}").render(
        {"country": "Latvia", "city": None, "date": datetime(2020, 1, 1), "stem": "DSC_0001", "camera": "Nikon/D90"})
    assert rel == "Latvia/unknown/2020/DSC_0001_Nikon-D90"
    # a landmark cannot smuggle in folders or a parent reference
    rel = t.render({"landmark": "../../x", "date": datetime(2019, 1, 1), "seq": 1})
    assert rel.split("/")[0] == "-..-x" and ".." not in rel.split("/")


@pytest.mark.parametrize("bad", ["", "../{landmark}", "{landmark}/../../{seq}", "/abs/{landmark}", "C:/x/{seq}",
                                 "a\\{seq}", "{landmark}//{seq}", "./{seq}", "{landmark.__class__}", "{landmark[0]}",
                                 "{nope}", "{landmark!r}", "plain", "{landmark", "{date:{seq}}", "{date:%Y/%m}_{seq}"])
def test_unsafe_templates_refused(bad):
    with pytest.raises(RenameError):
        Template(bad)


def test_seq_pattern():
    t = Template(DEFAULT_TEMPLATE)
    pat = t.seq_pattern({"landmark": "Big Ben", "date": datetime(2020, 2, 2)})
    m = pat.match("Big Ben/2020-02-02_Big Ben_012")
    assert m and int(m.group(1)) == 12
    assert not pat.match("Big Ben/2020-02-03_Big Ben_012")
    assert Template("{landmark}/{stem}").seq_pattern({}) is None
