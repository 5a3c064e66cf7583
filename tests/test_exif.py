"""exif.py on real camera files, and on JPEGs written with the broken values real archives contain."""

from __future__ import annotations

import shutil

import pytest
from conftest import camera_file, camera_sample
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from landmark_tagger.errors import UnsupportedImageError
from landmark_tagger.exif import PhotoFacts, camera_display_name, parse_exif_datetime, read_facts


@pytest.mark.parametrize(
    ("name", "taken_at", "camera", "orientation", "size"),
    [
        ("canon_5d3__K6A7945.JPG", "2023-09-01T17:20:51", "Canon EOS 5D Mark III", 8, (1920, 1280)),
        ("canon_5d3__K6A7946.JPG", "2023-09-01T17:21:05", "Canon EOS 5D Mark III", 6, (720, 480)),
        ("canon_g2_IMG_0308.JPG", "2022-01-20T08:14:32", "Canon PowerShot G2", 1, (640, 480)),
        ("nikon_d3100_DSC_0008.JPG", "2020-07-15T08:36:27", "Nikon D3100", 8, (4608, 3072)),
        ("nikon_d90_DSC_0003.JPG", "2021-06-25T10:32:57", "Nikon D90", 1, (4288, 2848)),
        ("nikon_e995_DSCN1325.JPG", "2020-07-15T08:40:41", "Nikon E995", 1, (2048, 1536)),
        ("P003913.KDC", "1994-01-02T15:57:56", "Kodak DC120 ZOOM Digital Camera", 1, (848, 976)),
        ("nikon_d1_truncated_75k.nef", "2000-11-19T13:01:50", "Nikon D1", None, (2012, 1324)),
        ("sony_a330_truncated_100k.arw", "2009-11-13T13:33:25", "Sony DSLR-A330", 1, (3880, 2608)),
    ],
)
def test_facts_of_real_cameras(name, taken_at, camera, orientation, size):
    facts = read_facts(camera_file(name))
    assert isinstance(facts, PhotoFacts)
    assert facts.taken_at == taken_at
    assert facts.camera == camera
    assert facts.orientation == orientation
    assert (facts.width, facts.height) == size
    assert facts.gps_lat is None and facts.gps_lon is None  # none of these cameras had GPS


def test_raw_make_and_model_are_kept_and_lens_read():
    facts = read_facts(camera_file("canon_5d3__K6A7945.JPG"))
    assert (facts.camera_make, facts.camera_model) == ("Canon", "Canon EOS 5D Mark III")
    assert facts.lens == "EF28-135mm f/3.5-5.6 IS USM"
    nikon = read_facts(camera_file("nikon_d90_DSC_0003.JPG"))
    assert (nikon.camera_make, nikon.camera_model) == ("NIKON CORPORATION", "NIKON D90")


def test_crw_without_exif_degrades_gracefully():
    facts = read_facts(camera_file("CRW_0113.CRW"))  # CIFF: exifread finds no EXIF; LibRaw gives the size
    assert facts.taken_at is None and facts.camera is None and facts.gps_lat is None
    assert (facts.width, facts.height) == (2312, 1720)


def test_gps_seconds_0_over_0_nikon_d5000():
    facts = read_facts(camera_sample("jpeg/mei_Nikon_D5000.jpg"))  # [48, 2666179/50000, 0/0] N, [21, 259507/100000, 0/0] E
    assert facts.gps_lat == pytest.approx(48 + 2666179 / 50000 / 60, abs=1e-6)
    assert facts.gps_lon == pytest.approx(21 + 259507 / 100000 / 60, abs=1e-6)
    assert facts.gps_alt == pytest.approx(64829 / 200, abs=0.01)
    assert facts.camera == "Nikon D5000" and facts.taken_at == "2011-03-12T15:36:11"


def test_gps_null_island_samsung_is_no_position():
    facts = read_facts(camera_sample("jpeg/mei_Samsung_GT-I9000.jpg"))  # GPS [0,0,0] N, [0,0,0] E
    assert (facts.gps_lat, facts.gps_lon, facts.gps_alt) == (None, None, None)
    assert facts.camera == "Samsung GT-I9000" and facts.orientation == 6


@pytest.mark.parametrize(
    ("relpath", "lat", "lon"),
    [
        ("jpeg/exifsamples_gps_DSCN0010.jpg", 43 + 28 / 60 + 1407 / 500 / 3600, 11 + 53 / 60 + 6.45599999 / 3600),
        ("jpeg/exiftool_GPS_stripped.jpg", 54 + 2969 / 50 / 60, -(1 + 1097 / 20 / 60)),  # W -> negative
        ("jpeg/mei_Apple_iPhone_5.jpg", 47 + 37.63 / 60, -(122 + 506 / 25 / 60)),
        ("raw/pentax_k3ii_jolstravatnet_truncated.pef", 61 + 13331 / 400 / 60, 6 + 140969 / 5000 / 60),
    ],
)
def test_gps_of_real_files(relpath, lat, lon):
    facts = read_facts(camera_sample(relpath))
    assert facts.gps_lat == pytest.approx(lat, abs=1e-6)
    assert facts.gps_lon == pytest.approx(lon, abs=1e-6)


def test_camera_names_of_more_cameras():
    assert read_facts(camera_sample("raw/pentax_k3ii_jolstravatnet_truncated.pef")).camera == "Pentax K-3 II"
    assert read_facts(camera_sample("jpeg/exifsamples_gps_DSCN0010.jpg")).camera == "Nikon COOLPIX P6000"
    z9 = read_facts(camera_sample("raw/nikon_z9_he_dx_overexposed.dng"))
    assert (z9.camera, z9.lens) == ("Nikon Z 9", "NIKKOR Z 85mm f/1.2 S")
    assert read_facts(camera_sample("jpeg/mei_Apple_iPhone_5.jpg")).camera == "Apple iPhone 5"


@pytest.mark.parametrize(
    ("make", "model", "expected"),
    [
        ("Canon", "Canon EOS 5D Mark III", "Canon EOS 5D Mark III"),
        ("NIKON CORPORATION", "NIKON D90", "Nikon D90"),
        ("NIKON", "E995", "Nikon E995"),
        ("SAMSUNG            ", "GT-I9000", "Samsung GT-I9000"),
        ("RICOH IMAGING COMPANY, LTD.  ", "PENTAX K-3 II      ", "Pentax K-3 II"),
        ("OLYMPUS IMAGING CORP.", "E-M5", "Olympus E-M5"),
        ("FUJIFILM", "X-T3", "Fujifilm X-T3"),
        ("Apple", "iPhone 5", "Apple iPhone 5"),
        ("Hasselblad", "Hasselblad X2D 100C", "Hasselblad X2D 100C"),
        (None, "NIKON D70", "Nikon D70"),
        ("Canon", None, "Canon"),
        ("", "  ", None),
        (None, None, None),
        ("ACME CAMERA WORKS", "ACME CAMERA WORKS Z1", "Acme Camera Works Z1"),
    ],
)
def test_camera_display_name(make, model, expected):
    assert camera_display_name(make, model) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2023:09:01 17:20:51", "2023-09-01T17:20:51"),
        ("2023:09:01 17:20:51\x00", "2023-09-01T17:20:51"),
        ("2023-09-01T17:20:51+02:00", "2023-09-01T17:20:51"),
        ("2023:09:01 17:20", "2023-09-01T17:20:00"),
        ("0000:00:00 00:00:00", None),
        ("    :  :     :  :  ", None),
        ("2023:02:30 10:00:00", None),
        ("2023:13:01 10:00:00", None),
        ("garbage", None),
        ("", None),
        (None, None),
        (b"2001:11:27 18:33:44", "2001-11-27T18:33:44"),
    ],
)
def test_parse_exif_datetime(value, expected):
    assert parse_exif_datetime(value) == expected


# ----------------------------------------------------------------------- broken values, written into real JPEGs


def _jpeg_with_exif(path, *, ifd0=None, exif=None, gps=None):
    ex = Image.Exif()
    for k, v in (ifd0 or {}).items():
        ex[k] = v
    if exif:
        ex[0x8769] = exif
    if gps is not None:
        ex[0x8825] = gps
    Image.new("RGB", (64, 48), (90, 120, 160)).save(path, "JPEG", exif=ex.tobytes())
    return path


def R(n, d=1):  # noqa: N802 - reads like EXIF's notation
    return IFDRational(n, d)


def test_zero_dates_fall_back_to_the_next_valid_one(tmp_path):
    p = _jpeg_with_exif(tmp_path / "a.jpg", ifd0={0x0132: "2011:04:02 18:30:10"},
                        exif={0x9003: "0000:00:00 00:00:00", 0x9004: "garbage"})
    assert read_facts(p).taken_at == "2011-04-02T18:30:10"
    q = _jpeg_with_exif(tmp_path / "b.jpg", ifd0={0x0132: "0000:00:00 00:00:00"}, exif={0x9003: "    :  :     :  :  "})
    assert read_facts(q).taken_at is None


@pytest.mark.parametrize(
    ("gps", "expected"),
    [
        # missing references: the values' own (positive) sign, i.e. north / east
        ({2: (R(45), R(30), R(0)), 4: (R(7), R(15), R(0))}, (45.5, 7.25)),
        # 0/0 minutes and seconds count as zero
        ({1: "S", 2: (R(33), R(0, 0), R(0, 0)), 3: "W", 4: (R(70), R(30), R(0, 0))}, (-33.0, -70.5)),
        # degrees x/0: no position
        ({1: "N", 2: (R(7, 0), R(0), R(0)), 3: "E", 4: (R(7), R(0), R(0))}, (None, None)),
        # out of range latitude / longitude
        ({1: "N", 2: (R(95), R(0), R(0)), 3: "E", 4: (R(7), R(0), R(0))}, (None, None)),
        ({1: "N", 2: (R(45), R(0), R(0)), 3: "E", 4: (R(181), R(0), R(0))}, (None, None)),
        # minutes >= 60 is garbage
        ({1: "N", 2: (R(45), R(75), R(0)), 3: "E", 4: (R(7), R(0), R(0))}, (None, None)),
        # all 0/0: nothing, and no exception
        ({1: "N", 2: (R(0, 0), R(0, 0), R(0, 0)), 3: "E", 4: (R(0, 0), R(0, 0), R(0, 0))}, (None, None)),
        # null island written as numbers
        ({1: "N", 2: (R(0), R(0), R(0)), 3: "E", 4: (R(0), R(0), R(0))}, (None, None)),
        # only a latitude
        ({1: "N", 2: (R(45), R(0), R(0))}, (None, None)),
        # a garbled reference is ignored
        ({1: "?", 2: (R(10), R(0), R(0)), 3: "X", 4: (R(20), R(0), R(0))}, (10.0, 20.0)),
    ],
)
def test_broken_gps_values(tmp_path, gps, expected):
    p = _jpeg_with_exif(tmp_path / "g.jpg", ifd0={0x010F: "NIKON CORPORATION", 0x0110: "NIKON D90"}, gps=gps)
    facts = read_facts(p)
    assert (facts.gps_lat, facts.gps_lon) == (pytest.approx(expected[0]) if expected[0] is not None else None,
                                              pytest.approx(expected[1]) if expected[1] is not None else None)
    assert facts.camera == "Nikon D90"


def test_altitude_below_sea_level_and_garbage(tmp_path):
    base = {1: "N", 2: (R(31), R(30), R(0)), 3: "E", 4: (R(35), R(30), R(0))}
    below = _jpeg_with_exif(tmp_path / "dead_sea.jpg", gps={**base, 5: b"\x01", 6: R(430)})
    assert read_facts(below).gps_alt == pytest.approx(-430)
    crazy = _jpeg_with_exif(tmp_path / "crazy.jpg", gps={**base, 5: b"\x00", 6: R(10**9)})
    facts = read_facts(crazy)
    assert facts.gps_alt is None and facts.gps_lat == pytest.approx(31.5)
    zero = _jpeg_with_exif(tmp_path / "zero.jpg", gps={**base, 6: R(5, 0)})
    assert read_facts(zero).gps_alt is None


def test_orientation_out_of_range_is_none(tmp_path):
    p = _jpeg_with_exif(tmp_path / "o.jpg", ifd0={0x0112: 9})
    assert read_facts(p).orientation is None


# --------------------------------------------------------------------------------------------------- bad files


def test_files_without_exif_give_empty_facts(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    empty = tmp_path / "empty.JPG"
    empty.write_bytes(b"")
    for p in (text, empty):
        facts = read_facts(p)
        assert facts == PhotoFacts()
    truncated = tmp_path / "cut.nef"
    truncated.write_bytes(camera_file("nikon_d1_truncated_75k.nef").read_bytes()[:200])
    assert read_facts(truncated).gps_lat is None  # no exception on a header cut short


def test_unreadable_file_raises(tmp_path):
    with pytest.raises(UnsupportedImageError, match="not found"):
        read_facts(tmp_path / "gone.jpg")
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(UnsupportedImageError, match="folder"):
        read_facts(tmp_path / "dir.jpg")


def test_odd_unicode_names(tmp_path):
    for name in ("📷 e\u0301 DSC_0003.JPG", "שלום DSC_0003.JPG"):
        p = tmp_path / name
        shutil.copyfile(camera_file("nikon_d90_DSC_0003.JPG"), p)
        assert read_facts(p).camera == "Nikon D90"
    raw = tmp_path / "日本 ARW 🎌.arw"
    shutil.copyfile(camera_file("sony_a330_truncated_100k.arw"), raw)
    assert read_facts(raw).camera == "Sony DSLR-A330"


def test_misnamed_jpeg_nef_gets_jpeg_size():
    facts = read_facts(camera_sample("raw/misnamed_jpeg_Issue_247-1.nef"))
    assert (facts.width, facts.height) == (2000, 3008) and facts.camera == "Nikon D70s"


def test_no_exifread_warnings_reach_the_log(tmp_path, caplog):
    # found by the end-to-end review: `ltag learn` on a text file named .jpg printed
    # "WARNING exifread: File format not recognized." through the CLI's root logger
    import logging

    p = tmp_path / "notes.jpg"
    p.write_text("hello, not an image\n")
    with caplog.at_level(logging.DEBUG):
        try:
            read_facts(p)
        except UnsupportedImageError:
            pass
    assert not [r for r in caplog.records if r.name.startswith("exifread") and r.levelno >= logging.WARNING]
