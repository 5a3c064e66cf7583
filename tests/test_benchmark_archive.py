"""The benchmark archive's NEF-like RAW files are real RAW files to LibRaw (preview and demosaic), and ltag reads
their preview, orientation and EXIF — checked on a small picture so the test stays fast."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from conftest import REPO_ROOT, camera_file

from landmark_tagger.decode import decode_for_model
from landmark_tagger.exif import read_facts

rawpy = pytest.importorskip("rawpy")


def _archive_module():
    spec = importlib.util.spec_from_file_location("bench_archive", REPO_ROOT / "benchmarks" / "archive.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_archive"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("orientation", [1, 6])
def test_nef_like_file_is_read_by_libraw_and_ltag(tmp_path, orientation):
    archive = _archive_module()
    picture = decode_for_model(camera_file("nikon_d90_DSC_0003.JPG"), 400).resize((600, 400))
    job = archive._Job(index=0, number=42, source="", label="taj_mahal", folder="", taken_at="2023:10:02 12:15:00",
                       orientation=orientation, gps=(27.1751, 78.0421, 170.0), raw=True, camera=0, quality=94, seed=1)
    nef = tmp_path / "DSC_0042.NEF"
    nef.write_bytes(archive._nef_bytes(job, picture))

    with rawpy.imread(str(nef)) as raw:
        assert (raw.sizes.raw_width, raw.sizes.raw_height) == (600, 400)
        assert raw.color_desc == b"RGBG"
        assert raw.extract_thumb().format == rawpy.ThumbFormat.JPEG
        rgb = raw.postprocess(half_size=True, use_camera_wb=True)
        assert rgb.shape[2] == 3 and rgb.std() > 10  # a demosaiced picture, not a flat fill

    img = decode_for_model(nef, 224)
    assert (img.height > img.width) == (orientation == 6)  # the RAW's orientation applied to its preview
    facts = read_facts(nef)
    assert facts.camera == "Nikon D7100" and facts.taken_at == "2023-10-02T12:15:00"
    assert facts.orientation == orientation
    assert facts.gps_lat == pytest.approx(27.1751, abs=1e-4) and facts.gps_lon == pytest.approx(78.0421, abs=1e-4)
    assert (facts.width, facts.height) == (600, 400)
