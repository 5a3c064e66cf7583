"""Search: the FTS index kept in sync by triggers, the query language, filters, sorts, stats and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata

import pytest

from landmark_tagger import search as S
from landmark_tagger.catalog import open_catalog

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def add(cat, path, **kw):
    folder, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    row = dict(path=path, folder=folder, name=name, stem=stem, ext=ext[1:], group_key=f"{folder}/{stem}".casefold(),
               kind="jpeg", status="tagged")
    for k in ("keywords", "hier_keywords"):
        if k in kw and not isinstance(kw[k], str):
            kw[k] = json.dumps(kw[k], ensure_ascii=False)
    row.update(kw)
    cols = ", ".join(row)
    cur = cat.conn.execute(f"INSERT INTO photos({cols}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
    return cur.lastrowid


@pytest.fixture()
def cat(tmp_path):
    c = open_catalog(tmp_path / "cat.db")
    add(c, "/arch/2019/DSC_0001.JPG", landmark="Freedom Monument", country="Latvia", region="Rīga", city="Rīga",
        taken_at="2019-05-01T10:00:00", confidence=0.91, camera="Nikon D90", lens="18-105mm f/3.5-5.6",
        keywords=["Baltic trip", "Places|Latvia|Rīga"], write_status="written",
        ltag_keywords=json.dumps(["Freedom Monument", "Landmarks|Freedom Monument"]))
    add(c, "/arch/2019/DSC_0002.NEF", landmark="Freedom Monument", country="Latvia", city="Rīga",
        taken_at="2019-05-01T10:00:05", confidence=0.62, camera="Nikon D90", role="companion", kind="raw")
    add(c, "/arch/2020/IMG_0308.JPG", status="unknown", taken_at="2020-07-14T09:00:00", camera="Canon PowerShot G2",
        keywords=["Saint-Malo", "beach"], write_status="pending")
    add(c, "/arch/2021/Reykjavík trip/P1.jpg", landmark="Hallgrímskirkja", country="Iceland", city="Reykjavík",
        taken_at="2021-01-02T12:00:00", confidence=0.99, camera="Sony ILCE-7M3", keywords=["winter"],
        write_status="failed")
    add(c, "/arch/nodate/x.jpg", landmark="Eiffel Tower", country="France", city="Paris", confidence=0.4,
        camera="Apple iPhone 12", keywords=[unicodedata.normalize("NFD", "Crème brûlée")])
    add(c, "/arch2/DSC_9999.JPG", landmark="Eiffel Tower", country="France", city="Paris",
        taken_at="2018-03-03T03:03:03", confidence=0.8, camera="Nikon D750", status="tagged")
    yield c
    c.close()


def paths(rows):
    return [os.path.basename(r["path"]) for r in rows]


def test_diacritics_and_case_insensitive(cat):
    assert paths(S.search(cat, "Riga")) == ["DSC_0002.NEF", "DSC_0001.JPG"]
    assert paths(S.search(cat, "RĪGA")) == ["DSC_0002.NEF", "DSC_0001.JPG"]
    assert paths(S.search(cat, "reykjavik")) == ["P1.jpg"]
    assert paths(S.search(cat, "hallgrimskirkja")) == ["P1.jpg"]
    assert paths(S.search(cat, "creme brulee")) == ["x.jpg"]      # NFD keyword written by another tool
    assert paths(S.search(cat, "crème")) == ["x.jpg"]


def test_fields_searched(cat):
    assert paths(S.search(cat, "baltic")) == ["DSC_0001.JPG"]     # keyword of another tool
    assert paths(S.search(cat, "d90")) == ["DSC_0002.NEF", "DSC_0001.JPG"]     # camera
    assert paths(S.search(cat, "105mm")) == ["DSC_0001.JPG"]      # lens
    assert paths(S.search(cat, "IMG_0308")) == ["IMG_0308.JPG"]   # file name
    assert paths(S.search(cat, "iceland")) == ["P1.jpg"]          # place
    assert S.search(cat, "arch") == []                            # folders are not searched as text


def test_and_or_phrase_prefix_not(cat):
    assert paths(S.search(cat, "nikon riga")) == ["DSC_0002.NEF", "DSC_0001.JPG"]
    assert paths(S.search(cat, "nikon iceland")) == []
    assert paths(S.search(cat, "paris OR iceland")) == ["P1.jpg", "DSC_9999.JPG", "x.jpg"]
    assert paths(S.search(cat, "nikon paris OR riga")) == ["DSC_0002.NEF", "DSC_0001.JPG", "DSC_9999.JPG"]
    assert paths(S.search(cat, "eiff")) == ["DSC_9999.JPG", "x.jpg"]        # prefix by default
    assert paths(S.search(cat, '"eiff"')) == []                            # quoted = whole words
    assert paths(S.search(cat, '"eiff"*')) == ["DSC_9999.JPG", "x.jpg"]
    assert paths(S.search(cat, '"freedom monument"')) == ["DSC_0002.NEF", "DSC_0001.JPG"]
    assert paths(S.search(cat, '"monument freedom"')) == []
    assert paths(S.search(cat, "saint-malo")) == ["IMG_0308.JPG"]
    assert paths(S.search(cat, "eiffel -d750")) == ["x.jpg"]
    assert paths(S.search(cat, '-"eiffel tower" -nikon')) == ["P1.jpg", "IMG_0308.JPG"]
    assert paths(S.search(cat, "or")) == []                       # lower-case or is a word
    assert len(S.search(cat, "")) == 6


@pytest.mark.parametrize("q", ['"', '""', "*", "AND", "OR", "NOT", "NEAR(a b)", "(", ")", "^", ":", "-", "--x",
                               "{landmark}: x", "landmark:eiffel", "a AND OR b", "'; DROP TABLE photos;--",
                               "eiffel OR", "OR eiffel", "a OR -b", "x*y", "\x00", "é́́", "NEAR", '"a" "b', "\\"])
def test_odd_queries_never_leak_fts_errors(cat, q):
    try:
        rows = S.search(cat, q)
    except S.SearchError as e:
        assert "letters or digits" in str(e)
    else:
        assert isinstance(rows, list)
    assert cat.conn.execute("SELECT count(*) FROM photos").fetchone()[0] == 6


def test_filters(cat):
    assert paths(S.search(cat, landmark=["eiffel tower"])) == ["DSC_9999.JPG", "x.jpg"]
    assert paths(S.search(cat, landmark=["eiffel"])) == ["DSC_9999.JPG", "x.jpg"]   # whole words of the name
    assert paths(S.search(cat, landmark=["eiff"])) == []                            # not a prefix
    assert paths(S.search(cat, landmark=["paris"])) == []                           # only the landmark field
    assert paths(S.search(cat, place=["riga"])) == ["DSC_0002.NEF", "DSC_0001.JPG"]
    assert paths(S.search(cat, place=["latvia", "iceland"])) == ["P1.jpg", "DSC_0002.NEF", "DSC_0001.JPG"]
    assert paths(S.search(cat, camera=["d750"])) == ["DSC_9999.JPG"]
    assert paths(S.search(cat, min_confidence=0.9)) == ["P1.jpg", "DSC_0001.JPG"]
    assert paths(S.search(cat, min_confidence=0.62)) == ["P1.jpg", "DSC_0002.NEF", "DSC_0001.JPG", "DSC_9999.JPG"]
    assert paths(S.search(cat, since="2019-05-01T10:00:01")) == ["P1.jpg", "IMG_0308.JPG", "DSC_0002.NEF"]
    assert paths(S.search(cat, since="2020")) == ["P1.jpg", "IMG_0308.JPG"]
    assert paths(S.search(cat, until="2019")) == ["DSC_0002.NEF", "DSC_0001.JPG", "DSC_9999.JPG", "x.jpg"]
    assert paths(S.search(cat, since="2019-05", until="2020-07-14")) == ["IMG_0308.JPG", "DSC_0002.NEF",
                                                                        "DSC_0001.JPG"]
    assert paths(S.search(cat, until="2020-07-13")) == ["DSC_0002.NEF", "DSC_0001.JPG", "DSC_9999.JPG", "x.jpg"]
    assert paths(S.search(cat, unknown=True)) == ["IMG_0308.JPG"]
    assert paths(S.search(cat, unwritten=True)) == ["P1.jpg", "IMG_0308.JPG"]
    assert paths(S.search(cat, folder="/arch")) == ["P1.jpg", "IMG_0308.JPG", "DSC_0002.NEF", "DSC_0001.JPG", "x.jpg"]
    assert paths(S.search(cat, folder="/arch/2021/Reykjavík trip/")) == ["P1.jpg"]
    assert paths(S.search(cat, folder="/arch/2021/Reykjavík")) == []     # a folder, not a string prefix
    assert paths(S.search(cat, "nikon", folder="/arch2", min_confidence=0.5)) == ["DSC_9999.JPG"]
    with pytest.raises(S.SearchError):
        S.search(cat, since="May 2019")


def test_sorts_limit_offset_count(cat):
    by_date = paths(S.search(cat, ""))
    assert by_date == ["P1.jpg", "IMG_0308.JPG", "DSC_0002.NEF", "DSC_0001.JPG", "DSC_9999.JPG", "x.jpg"]
    assert paths(S.search(cat, "", sort="confidence")) == ["P1.jpg", "DSC_0001.JPG", "DSC_9999.JPG", "DSC_0002.NEF",
                                                           "x.jpg", "IMG_0308.JPG"]
    assert [r["path"] for r in S.search(cat, "", sort="path")] == sorted(r["path"] for r in S.search(cat, ""))
    assert paths(S.search(cat, "", limit=2, offset=1)) == by_date[1:3]
    assert S.count(cat, "") == 6
    assert S.count(cat, "nikon") == 3
    assert S.count(cat, "nikon", min_confidence=0.7) == 2
    with pytest.raises(S.SearchError):
        S.search(cat, "x", sort="size")


def test_result_fields(cat):
    (r,) = S.search(cat, "baltic")
    assert r["path"] == "/arch/2019/DSC_0001.JPG" and r["group"] == "/arch/2019/dsc_0001"
    assert r["landmark"] == "Freedom Monument" and r["confidence"] == 0.91
    assert r["places"] == ["Latvia", "Rīga", "Rīga"] and r["all_keywords"] == ["Baltic trip", "Places|Latvia|Rīga"]
    assert r["keywords"] == ["Freedom Monument", "Landmarks|Freedom Monument"]      # ltag's, as scan --json
    assert r["status"] == "tagged" and r["error"] is None and r["date"] == "2019-05-01T10:00:00"
    assert r["camera"] == "Nikon D90"


def test_triggers_keep_index_in_sync(cat):
    cat.conn.execute("UPDATE photos SET landmark = 'Milda', ltag_keywords = '[]', taken_at = '2030-01-01T00:00:00' "
                     "WHERE name = 'DSC_0001.JPG'")
    assert paths(S.search(cat, "milda")) == ["DSC_0001.JPG"]
    assert paths(S.search(cat, "freedom")) == ["DSC_0002.NEF"]
    assert paths(S.search(cat, ""))[0] == "DSC_0001.JPG"           # its new date sorts it first
    cat.conn.execute("UPDATE photos SET path = '/arch/2019/renamed.JPG', name = 'renamed.JPG' "
                     "WHERE name = 'DSC_0001.JPG'")
    assert paths(S.search(cat, "renamed")) == ["renamed.JPG"] and S.search(cat, "DSC_0001") == []
    cat.conn.execute("UPDATE photos SET mtime_ns = 5")             # not an indexed column: no churn, still right
    cat.conn.execute("DELETE FROM photos WHERE name = 'renamed.JPG'")
    assert S.search(cat, "milda") == []
    cat.conn.execute("INSERT INTO photos_fts(photos_fts) VALUES('integrity-check')")
    before = [r["path"] for r in S.search(cat, "", limit=None)]
    S.rebuild_search_index(cat.conn)
    assert [r["path"] for r in S.search(cat, "", limit=None)] == before


def test_index_built_for_existing_catalog(tmp_path):
    c = open_catalog(tmp_path / "old.db")
    add(c, "/p/a.jpg", landmark="Colosseum", taken_at="2010-01-01T00:00:00")
    for t in ("photos_fts_ai", "photos_fts_ad", "photos_fts_au"):
        c.conn.execute(f"DROP TRIGGER {t}")
    c.conn.execute("DROP TABLE photos_fts")
    add(c, "/p/b.jpg", landmark="Colosseum", taken_at="2011-01-01T00:00:00")
    c.close()
    c = open_catalog(tmp_path / "old.db")      # an older catalog without the index: built on open
    assert paths(S.search(c, "colosseum")) == ["b.jpg", "a.jpg"]
    c.close()


def test_stats(cat):
    cat.conn.execute("INSERT INTO runs(kind, started_at, finished_at, status) VALUES ('scan', 'a', 'b', 'done')")
    st = S.stats(cat)
    assert st["files"] == 6 and st["photos"] == 6
    assert st["landmarks"][0] == {"landmark": "Eiffel Tower", "photos": 2}
    assert {lm["landmark"] for lm in st["landmarks"]} == {"Eiffel Tower", "Freedom Monument", "Hallgrímskirkja"}
    assert st["unknown"] == 1 and st["unknown_share"] == pytest.approx(1 / 6)
    assert st["countries"][0]["photos"] == 2 and st["last_scan"]["finished_at"] == "b"


def _ltag(args, db, **kw):
    env = dict(os.environ, LTAG_DB=str(db), PYTHONPATH=REPO, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "landmark_tagger", *args], capture_output=True, env=env, **kw)


def test_cli_outputs(cat):
    db = cat.path
    r = _ltag(["search", "--json", "nikon"], db)
    assert r.returncode == 0, r.stderr
    objs = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert [os.path.basename(o["path"]) for o in objs] == ["DSC_0002.NEF", "DSC_0001.JPG", "DSC_9999.JPG"]
    for key in ("path", "group", "landmark", "confidence", "places", "keywords", "status", "error", "date", "camera"):
        assert key in objs[0]
    r = _ltag(["search", "-0", "riga"], db)
    assert r.stdout == b"/arch/2019/DSC_0002.NEF\0/arch/2019/DSC_0001.JPG\0"
    r = _ltag(["search", "--paths", "--unknown"], db)
    assert r.stdout.decode() == "/arch/2020/IMG_0308.JPG\n"
    r = _ltag(["search", "riga", "--count"], db)
    assert r.returncode == 0 and "DSC_0001.JPG" in r.stdout.decode() and "of 2 matches" in r.stderr.decode()
    r = _ltag(["search", "--paths", "nothing-like-this"], db)
    assert r.returncode == 1 and r.stdout == b"" and b"No photos match" in r.stderr
    r = _ltag(["search", '"'], db)
    assert r.returncode == 1 and b"Traceback" not in r.stderr
    r = _ltag(["stats", "--json"], db)
    assert json.loads(r.stdout)["files"] == 6
    r = _ltag(["stats"], db)
    assert r.returncode == 0 and "Eiffel Tower" in r.stdout.decode()


def test_long_prefixes_expand_through_the_vocabulary(cat):
    # rows written since the last search sit in the staging index; a search folds them into search_vocab
    add(cat, "/arch/2022/a.jpg", landmark="Hallgrímskirkja", taken_at="2022-01-01T00:00:00")
    assert cat.conn.execute("SELECT 1 FROM photos_fts_stage_v LIMIT 1").fetchone() is not None
    assert paths(S.search(cat, "hallgrímsk")) == ["a.jpg", "P1.jpg"]
    assert cat.conn.execute("SELECT 1 FROM photos_fts_stage_v LIMIT 1").fetchone() is None
    assert cat.conn.execute("SELECT 1 FROM search_vocab WHERE term = 'hallgrimskirkja'").fetchone()
    expr = S.parse_query("hallgr").fts(expander=S._Expander(cat.conn))
    assert '"hallgrimskirkja"' in expr and "*" not in expr          # an OR of exact terms, no prefix merge
    assert paths(S.search(cat, "saint-mal")) == ["IMG_0308.JPG"]    # prefix on the last token of a phrase
    assert paths(S.search(cat, "-hallgr", limit=2)) == ["IMG_0308.JPG", "DSC_0002.NEF"]


def test_prefix_with_many_terms_falls_back_to_fts(cat):
    for i in range(80):
        add(cat, f"/many/IMG_{i}.jpg", keywords=[f"zebra{i:03d}"], taken_at=f"2000-01-01T00:00:{i % 60:02d}")
    expr = S.parse_query("zebra0").fts(expander=S._Expander(cat.conn))
    assert expr.count('"zebra0"*') == 1                              # > 64 terms: the native prefix query
    assert len(S.search(cat, "zebra0", limit=None)) == 80
    assert len(S.search(cat, "zebra07", limit=None)) == 10


def test_prefix_sees_new_rows_while_catalog_is_busy(cat, tmp_path):
    add(cat, "/arch/2023/new.jpg", landmark="Kinkaku-ji", taken_at="2023-01-01T00:00:00")
    other = open_catalog(cat.path)
    other.conn.execute("BEGIN IMMEDIATE")          # a scan holds the write lock
    try:
        assert paths(S.search(cat, "kinkaku")) == ["new.jpg"]     # read from the staging index, no waiting
        assert paths(S.search(cat, "kinka")) == ["new.jpg"]
    finally:
        other.conn.rollback()
        other.close()
    assert paths(S.search(cat, "kinkak")) == ["new.jpg"]


def test_confidence_sort_by_buckets_equals_a_full_sort(tmp_path):
    import random

    c = open_catalog(tmp_path / "conf.db")
    rng = random.Random(3)
    for i in range(400):
        conf = rng.choice([None, 1.0, 0.0, 0.5, round(rng.random(), 4), round(rng.random(), 2)])
        add(c, f"/c/IMG_{i}.jpg", confidence=conf, camera=rng.choice(["Nikon D750", "Canon R6"]),
            taken_at=f"20{rng.randrange(10, 25)}-01-01T00:00:{rng.randrange(60):02d}")
    for q in ("", "nikon"):
        full = [r["path"] for r in S.search(c, q, sort="confidence", limit=None)]   # one SQL ORDER BY
        assert len(full) > 150
        for limit, offset in ((50, 0), (7, 3), (100, 120), (50, len(full) - 10), (10, len(full) + 5)):
            page = [r["path"] for r in S.search(c, q, sort="confidence", limit=limit, offset=offset)]
            assert page == full[offset:offset + limit]
        confs = [r["confidence"] for r in S.search(c, q, sort="confidence", limit=None)]
        known = [x for x in confs if x is not None]
        assert known == sorted(known, reverse=True) and confs[len(known):] == [None] * (len(confs) - len(known))
    c.close()


@pytest.mark.parametrize("kw", [{}, {"folder": "/arch"}, {"unknown": True}, {"unwritten": True}, {"since": "2019-05"},
                                {"until": "2019"}, {"min_confidence": 0.6}, {"folder": "/arch", "since": "2020"}])
def test_path_sort_without_text_matches_the_index_answer(cat, kw):
    fast = [r["path"] for r in S.search(cat, "", sort="path", limit=None, **kw)]      # the photos path index
    via_fts = sorted(r["path"] for r in S.search(cat, "", sort="date", limit=None, **kw))
    assert fast == via_fts and fast
    assert [r["path"] for r in S.search(cat, "", sort="path", limit=2, offset=1, **kw)] == fast[1:3]


def test_unwritten_includes_read_only_files(cat):
    # a decision kept from a read-only file is not in the file yet: `ltag write` writes it once writable,
    # so --unwritten (and stats' unwritten count) must list it (found by the end-to-end review)
    add(cat, "/arch/ro/DSC_7777.JPG", landmark="Eiffel Tower", confidence=0.9, write_status="readonly",
        taken_at="2017-01-01T00:00:00")
    assert paths(S.search(cat, unwritten=True)) == ["P1.jpg", "IMG_0308.JPG", "DSC_7777.JPG"]
    assert paths(S.search(cat, unwritten=True, sort="path")) == ["IMG_0308.JPG", "P1.jpg", "DSC_7777.JPG"]
    assert S.stats(cat)["unwritten_files"] == 3


def test_cli_usage_errors_are_click_usage_errors(cat):
    # found by the end-to-end review: typer's vendored click exceptions slipped past cli.main's ClickException
    # check and came out as "Error: BadParameter: ... (run with --debug for the traceback)", exit 1, no usage
    for args, what in ((["search", "--min-confidence", "2"], "Invalid value for '--min-confidence'"),
                       (["search", "--no-such-flag"], "No such option: --no-such-flag")):
        r = _ltag(args, cat.path)
        err = " ".join(r.stderr.decode().split())
        assert r.returncode == 2 and what in err and "Usage: " in err and " search [OPTIONS]" in err, err
        assert "BadParameter" not in err and "--debug" not in err and "NoSuchOption" not in err


def test_cli_no_match_hint_only_for_an_empty_catalog(cat, tmp_path):
    # found by the end-to-end review: `ltag search --place india` in a scanned catalog said
    # "No photos match. (Is the catalog scanned?)"
    r = _ltag(["search", "--place", "atlantis"], cat.path)
    assert r.returncode == 1 and b"No photos match" in r.stderr and b"scanned" not in r.stderr
    empty = open_catalog(tmp_path / "empty.db")
    empty.close()
    r = _ltag(["search", "--unknown"], tmp_path / "empty.db")
    assert r.returncode == 1 and b"Is the catalog scanned?" in r.stderr
