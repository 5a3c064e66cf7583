"""Build the metadata-fidelity corpus at test time (nothing binary is committed).

Real camera JPEGs (the CC0 ones in ``tests/data/camera``, plus the shared camera samples when present) get
metadata typical of many camera makers and programs written onto them with exiftool: their own or
transplanted maker notes, Make/Model/Software, IPTC captions and copyright (UTF-8 and legacy Latin-1
without 1:90), XMP with nested structures and custom namespaces (``exiftool.config``), keywords from
other tools, Extended XMP, a Photoshop IRB with an IPTC digest, a JPEG comment, an MPO (MPF index).
Some profiles embed a handwritten XMP packet in the style of the tool that wrote it (the sidecars in
``sidecars/`` double as those packets). Sidecars are copied as they are; the malformed ones and a few
broken JPEGs must be refused.

Usage: ``build_corpus(dest) -> Corpus``; ``python -m tests.corpus.build DEST`` builds it by hand.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CONFIG = HERE / "exiftool.config"
SIDECARS = HERE / "sidecars"
CAMERA_DIRS = [REPO / "tests" / "data" / "camera", REPO.parent / "shared" / "data" / "camera-samples" / "jpeg"]

# base photo key -> file name (first directory that has it wins)
BASES = {
    "canon5d": "canon_5d3__K6A7946.JPG",
    "canon5d_b": "canon_5d3__K6A7945.JPG",
    "canong2": "canon_g2_IMG_0308.JPG",
    "nikond90": "nikon_d90_DSC_0003.JPG",
    "nikond90_b": "nikon_d90_DSC_0011.JPG",
    "nikond3100": "nikon_d3100_DSC_0008.JPG",
    "nikone995": "nikon_e995_DSCN1325.JPG",
    # shared samples (not CC0, read in place when present, never copied into the repo)
    "iphone5": "mei_Apple_iPhone_5.jpg",
    "samsung": "mei_Samsung_GT-I9000.jpg",
    "sony": "mei_Sony_Cybershot_3.jpg",
    "fuji": "exiftool_GPS_stripped.jpg",
    "nikond1x": "mei_Nikon_D1X.jpg",
    "nikond5000": "mei_Nikon_D5000.jpg",
    "nikond70": "exifsamples_Nikon_D70.jpg",
    "coolpix": "exifsamples_gps_DSCN0010.jpg",
}
GENERIC = "canong2"  # base for makers without a sample of their own (maker notes removed first)


@dataclass
class Profile:
    name: str
    origin: str  # the camera maker or program whose metadata this imitates
    base: str
    args: list[str] = field(default_factory=list)  # exiftool arguments
    packet: str | None = None  # a file in sidecars/ embedded verbatim as the XMP packet
    native: bool = True  # False: base is generic; strip maker notes, set Make/Model


@dataclass
class CorpusFile:
    path: Path
    origin: str
    profile: str


@dataclass
class Corpus:
    jpegs: list[CorpusFile]
    sidecars: list[CorpusFile]
    malformed: list[Path]
    raws: list[Path] = field(default_factory=list)  # RAW files in raw/, some with another tool's sidecar beside

    @property
    def origins(self) -> set[str]:
        return {f.origin for f in self.jpegs + self.sidecars}


def _maker(name: str, make: str, model: str, software: str = "", extra: list[str] | None = None) -> Profile:
    args = [f"-EXIF:Make={make}", f"-EXIF:Model={model}"]
    if software:
        args.append(f"-EXIF:Software={software}")
    return Profile(f"maker_{name.lower().replace(' ', '_')}", name, GENERIC, args + (extra or []), native=False)


UTF8_IPTC = ["-IPTC:CodedCharacterSet=UTF8"]

PROFILES: list[Profile] = [
    # ---- cameras with their own maker notes
    Profile(
        "canon_5d3",
        "Canon",
        "canon5d",
        [
            "-XMP-aux:Lens=EF24-105mm f/4L IS USM",
            "-XMP-aux:SerialNumber=012345678901",
            "-IPTC:By-line=Jane Photographer",
            "-IPTC:CopyrightNotice=(c) 2023 Jane",
            *UTF8_IPTC,
        ],
    ),
    Profile("canon_5d3_lr", "Canon", "canon5d_b", [], packet="lightroom_DSC_0001.xmp"),
    Profile(
        "nikon_d90",
        "Nikon",
        "nikond90",
        [
            "-IPTC:Caption-Abstract=Nikon D90 test frame",
            "-IPTC:Keywords=nikon",
            "-IPTC:Keywords=test",
            "-XMP-dc:Subject=nikon",
            "-XMP-dc:Subject=test",
        ],
    ),
    Profile("nikon_d3100", "Nikon", "nikond3100", ["-XMP-xmp:Rating=3", "-XMP-xmp:Label=Blue"]),
    Profile("nikon_e995", "Nikon", "nikone995", ["-Comment=Nikon E995 frame, JPEG comment segment"]),
    Profile(
        "nikon_mn_transplant", "Nikon", GENERIC, ["-TagsFromFile", "@nikond3100", "-MakerNotes", "-Make", "-Model"]
    ),
    Profile(
        "apple_iphone",
        "Apple",
        "iphone5",
        ["-XMP-photoshop:DateCreated=2012:09:29 16:11:25", *UTF8_IPTC, "-IPTC:Caption-Abstract=Café in Zürich"],
    ),
    Profile("samsung_galaxy", "Samsung", "samsung", ["-XMP-xmp:CreatorTool=Samsung Gallery"]),
    Profile("sony_cybershot", "Sony", "sony", ["-IPTC:Keywords=sony"]),
    Profile("fujifilm_s1pro", "Fujifilm", "fuji", ["-IPTC:Keywords=fuji", "-XMP-dc:Subject=fuji"]),
    Profile("nikon_d1x", "Nikon", "nikond1x", []),
    Profile("nikon_d5000_icc", "Nikon", "nikond5000", ["-XMP-dc:Title=With an ICC profile"]),
    Profile("nikon_d70", "Nikon", "nikond70", []),
    Profile("nikon_coolpix_gps", "Nikon", "coolpix", ["-XMP-exif:GPSAltitude=120"]),
    # ---- makers without a sample here: Make/Model/Software and the XMP they typically write
    _maker("Olympus", "OM Digital Solutions", "OM-1", "OM-1 Ver1.3"),
    _maker("Panasonic", "Panasonic", "DC-GH5", "Ver.2.7"),
    _maker("Pentax", "RICOH IMAGING COMPANY, LTD.", "PENTAX K-3 Mark III", "PENTAX K-3 Mark III Ver 1.40"),
    _maker("Leica", "LEICA CAMERA AG", "LEICA M11", "2.0.1.0", ["-XMP-aux:Lens=Summilux-M 1:1.4/35 ASPH."]),
    _maker("Hasselblad", "Hasselblad", "X2D 100C", "Phocus 3.8"),
    _maker("Phase One", "Phase One", "IQ4 150MP", "Capture One 23"),
    _maker("Sigma", "SIGMA", "fp L", "Ver.4.00"),
    _maker("Ricoh", "RICOH IMAGING COMPANY, LTD.", "RICOH GR III", "RICOH GR III Ver 1.90"),
    _maker("GoPro", "GoPro", "HERO11 Black", "H22.01.01.10.00"),
    _maker(
        "DJI",
        "DJI",
        "FC3170",
        "10.00.05.62",
        [
            "-XMP-drone-dji:AbsoluteAltitude=+231.45",
            "-XMP-drone-dji:RelativeAltitude=+42.10",
            "-XMP-drone-dji:GimbalYawDegree=-12.30",
            "-XMP-drone-dji:FlightRollDegree=+1.20",
            "-GPSLatitude=27.1751",
            "-GPSLatitudeRef=N",
            "-GPSLongitude=78.0421",
            "-GPSLongitudeRef=E",
        ],
    ),
    _maker(
        "Google",
        "Google",
        "Pixel 7 Pro",
        "HDR+ 1.0.485340213zd",
        [
            "-XMP-GCamera:MicroVideo=1",
            "-XMP-GCamera:MicroVideoVersion=1",
            "-XMP-GCamera:MicroVideoOffset=0",
            "-XMP-GDepth:Format=RangeInverse",
            "-XMP-GDepth:Near=0.5",
            "-XMP-GDepth:Far=8.25",
            "-XMP-GDepth:Mime=image/jpeg",
            "-XMP-GDepth:DepthImage<=@depth",  # large: goes to Extended XMP
        ],
    ),
    _maker("Huawei", "HUAWEI", "VOG-L29", "VOG-L29 10.1.0.162"),
    _maker("Xiaomi", "Xiaomi", "M2101K9G", "", ["-XMP-xmp:CreatorTool=MIUI Camera"]),
    _maker("Kodak", "EASTMAN KODAK COMPANY", "KODAK EASYSHARE Z981", ""),
    _maker("Minolta", "KONICA MINOLTA", "DiMAGE A2", "DiMAGE A2 v1.00"),
    _maker("Casio", "CASIO COMPUTER CO.,LTD.", "EX-F1", "1.00"),
    _maker(
        "Insta360",
        "Arashi Vision",
        "Insta360 X3",
        "",
        [
            "-XMP-GPano:ProjectionType=equirectangular",
            "-XMP-GPano:UsePanoramaViewer=True",
            "-XMP-GPano:FullPanoWidthPixels=640",
            "-XMP-GPano:FullPanoHeightPixels=320",
        ],
    ),
    # ---- programs
    Profile(
        "photoshop",
        "Adobe Photoshop",
        "canon5d",
        [
            "-EXIF:Software=Adobe Photoshop 25.0 (Windows)",
            "-Photoshop:XResolution=300",
            "-Photoshop:YResolution=300",
            "-Photoshop:PhotoshopQuality=10",
            *UTF8_IPTC,
            "-IPTC:Caption-Abstract=Retouched – final",
            "-IPTC:CopyrightNotice=© 2024 Studio",
            "-IPTC:Keywords=retouched",
            "-XMP-dc:Subject=retouched",
            "-XMP-photoshop:History=",
            "-XMP-xmpMM:DocumentID=xmp.did:0a1b2c3d",
            "-XMP-xmpMM:DerivedFrom={DocumentID=xmp.did:0a1b2c3d,InstanceID=xmp.iid:1e2f3a4b}",
            "-Photoshop:IPTCDigest=new",
        ],
    ),
    Profile(
        "lightroom_export",
        "Adobe Lightroom Classic",
        "nikond90_b",
        [
            "-IPTC:Keywords=Paris",
            "-IPTC:Keywords=spring",
            "-IPTC:Keywords=street",
        ],
        packet="lightroom_DSC_0001.xmp",
    ),
    Profile("bridge", "Adobe Bridge", "canong2", [], packet="bridge_DSC_0008.xmp"),
    Profile(
        "captureone",
        "Capture One",
        "canon5d",
        [*UTF8_IPTC, "-IPTC:Headline=Harbour at dawn", "-IPTC:Keywords=boats", "-IPTC:Keywords=Göteborg"],
        packet="captureone_DSC_0003.xmp",
    ),
    Profile(
        "photomechanic",
        "Photo Mechanic",
        "nikone995",
        [
            "-charset",
            "iptc=Latin",
            "-IPTC:Caption-Abstract=Match day – Stadio Olímpico, ½ time",
            "-IPTC:By-line=José Müller",
            "-IPTC:City=Roma",
            "-IPTC:Keywords=football",
            "-IPTC:Keywords=Straße",
            "-IPTC:SupplementalCategories=Serie A",
            "-IPTC:OriginalTransmissionReference=PM-0042",
        ],
        packet="photomechanic_DSC_0005.xmp",
    ),
    Profile(
        "legacy_latin1_iptc",
        "Nikon View (legacy IPTC)",
        "canong2",
        [
            "-charset",
            "iptc=Latin",
            "-IPTC:Caption-Abstract=Été à Montréal, façade",
            "-IPTC:Keywords=été",
            "-IPTC:Keywords=Montréal",
            "-IPTC:ObjectName=Façade",
        ],
    ),
    Profile("digikam", "digiKam", "canon5d_b", [], packet="digikam_DSC_0004.NEF.xmp"),
    Profile("darktable", "darktable", "nikond3100", [], packet="darktable_DSC_0002.NEF.xmp"),
    Profile("acdsee", "ACDSee", "canong2", [], packet="acdsee_IMG_0006.xmp"),
    Profile("on1", "ON1 Photo RAW", "nikone995", [], packet="on1_DSC_0011.ARW.xmp"),
    Profile("studio_dam_packet", "Acme Studio DAM", "canong2", [], packet="studio_dam_DSC_0009.xmp"),
    Profile(
        "studio_dam_exiftool",
        "Acme Studio DAM",
        "nikond90",
        [
            "-XMP-acme:ProjectCode=P-2024-017",
            "-XMP-acme:Reviewers=alice",
            "-XMP-acme:Reviewers=bob",
            "-XMP-acme:Shoot={Client=Big Client,Budget=12000,Crew=[carol,dave],Location={Name=Studio B,Floor=3}}",
        ],
    ),
    Profile(
        "windows_photo_gallery",
        "Windows Photo Gallery",
        "canon5d",
        [
            "-EXIF:XPKeywords=family;holiday",
            "-EXIF:Rating=4",
            "-EXIF:RatingPercent=75",
            "-XMP-microsoft:LastKeywordXMP=family",
            "-XMP-microsoft:LastKeywordXMP=holiday",
            "-XMP-dc:Subject=family",
            "-XMP-dc:Subject=holiday",
        ],
    ),
    Profile(
        "picasa",
        "Picasa",
        "canong2",
        [
            "-IPTC:Keywords=picnic",
            "-IPTC:Keywords=summer",
            "-XMP-mwg-rs:RegionInfo={AppliedToDimensions={W=640,H=480,Unit=pixel},"
            "RegionList=[{Area={X=0.5,Y=0.4,W=0.1,H=0.15,Unit=normalized},Name=Anna,Type=Face}]}",
        ],
    ),
    Profile(
        "gimp",
        "GIMP",
        "canong2",
        ["-EXIF:Software=GIMP 2.10.34", "-Comment=Created with GIMP", "-XMP-xmp:CreatorTool=GIMP 2.10"],
    ),
    Profile(
        "apple_photos",
        "Apple Photos",
        "nikone995",
        [
            "-XMP-photoshop:DateCreated=2020:07:15 08:40:41",
            "-XMP-xmp:Rating=5",
            "-EXIF:Software=Photos 8.0",
            "-XMP-dc:Title=Morning",
            "-XMP-dc:Description=Lake at dawn",
        ],
    ),
    Profile(
        "iptc_extension",
        "IPTC Photo Metadata (Iptc4xmpExt)",
        "canon5d",
        [
            "-XMP-iptcExt:LocationShown={City=Agra,ProvinceState=Uttar Pradesh,CountryName=India}",
            "-XMP-iptcExt:PersonInImage=Guide",
            "-XMP-iptcExt:Event=Heritage walk",
            "-XMP-iptcExt:ArtworkOrObject={AOTitle=Taj Mahal,AOCreator=[Ustad Ahmad Lahauri]}",
            "-XMP-iptcCore:CreatorContactInfo={CiAdrCity=Agra,CiEmailWork=a@example.org}",
            "-XMP-plus:ImageSupplier={ImageSupplierName=Example Agency}",
            *UTF8_IPTC,
            "-IPTC:Sub-location=Taj Ganj",
            "-IPTC:Keywords=heritage",
        ],
    ),
    Profile(
        "exiftool_shorthand",
        "ExifTool",
        "nikond3100",
        [
            "-api",
            "Compact=Shorthand,NoPadding",
            "-XMP-rdf:About=uuid:faf5bdd5-ba3d-11da-ad31-d33d75182f1b",
            "-XMP-xmp:Rating=2",
            "-XMP-photoshop:Headline=Shorthand XMP",
            "-XMP-dc:Subject=shorthand",
        ],
    ),
    Profile(
        "mpo_3d",
        "Fujifilm FinePix REAL 3D",
        "@mpo",
        [
            "-EXIF:Make=FUJIFILM",
            "-EXIF:Model=FinePix REAL 3D W3",
        ],
    ),
]


def find_bases() -> dict[str, Path]:
    """Base photos available on this machine (CC0 ones are committed; shared ones may be absent)."""
    found = {}
    for key, name in BASES.items():
        for d in CAMERA_DIRS:
            if (d / name).is_file():
                found[key] = d / name
                break
    return found


def _depth_map(path: Path) -> None:
    """A noisy grayscale JPEG (>64 KB) standing in for a phone's depth map, deterministic."""
    from PIL import Image

    rnd = random.Random(7)
    im = Image.frombytes("L", (400, 300), bytes(rnd.getrandbits(8) for _ in range(400 * 300)))
    im.save(path, "JPEG", quality=95)


def _mpo(path: Path, src: Path) -> None:
    """A two-frame MPO (MPF index in APP2) made from a real photo."""
    from PIL import Image

    with Image.open(src) as im:
        im = im.convert("RGB")
        im.thumbnail((320, 320))
        right = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        # Pillow writes the XMP segment after the MPF index: growing it shifts the second image
        xmp = (
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            b'<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="1"/>'
            b"</rdf:RDF></x:xmpmeta>"
        )
        im.save(path, "MPO", save_all=True, append_images=[right], quality=90, xmp=xmp)


def _embeddable(sidecar: Path) -> bytes:
    """A sidecar's packet as a JPEG embeds it: no XML declaration (exiftool refuses one in a JPEG)."""
    data = sidecar.read_bytes()
    if data.startswith(b"<?xml"):
        data = data[data.index(b"?>") + 2 :].lstrip()
    return data


def _with_xmp(data: bytes, packet: bytes) -> bytes:
    """Insert a raw APP1 XMP segment after SOI (for broken packets exiftool would refuse to write)."""
    payload = b"http://ns.adobe.com/xap/1.0/\x00" + packet
    return data[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + data[2:]


def build_corpus(dest: Path, exiftool: str = "exiftool") -> Corpus:
    """Build the corpus under ``dest`` (created) and return what it holds."""
    dest = Path(dest)
    (dest / "jpeg").mkdir(parents=True, exist_ok=True)
    (dest / "sidecar").mkdir(exist_ok=True)
    (dest / "malformed").mkdir(exist_ok=True)
    (dest / "work").mkdir(exist_ok=True)
    bases = find_bases()
    if GENERIC not in bases:
        raise FileNotFoundError(f"corpus base photo {BASES[GENERIC]} not found in {CAMERA_DIRS}")
    depth = dest / "work" / "depth.jpg"
    _depth_map(depth)
    mpo = dest / "work" / "mpo.jpg"
    _mpo(mpo, bases[GENERIC])

    argfile: list[str] = []
    jpegs: list[CorpusFile] = []
    for i, prof in enumerate(PROFILES):
        if prof.base == "@mpo":
            src = mpo
        elif prof.base in bases:
            src = bases[prof.base]
        else:
            continue  # a shared sample that is not on this machine
        out = dest / "jpeg" / f"{i:02d}_{prof.name}.jpg"
        shutil.copyfile(src, out)
        out.chmod(0o644)
        args = []
        for a in prof.args:
            if a == "@nikond3100":
                if "nikond3100" not in bases:
                    break
                a = str(bases["nikond3100"])
            args.append(a.replace("@depth", str(depth)))
        else:
            if not prof.native:
                argfile += ["-MakerNotes:All=", "-overwrite_original", "-m", str(out), "-execute"]
            if args:
                argfile += [*args, "-overwrite_original", "-m", str(out), "-execute"]
            if prof.packet:
                packet = dest / "work" / f"{i:02d}_{prof.packet}"
                packet.write_bytes(_embeddable(SIDECARS / prof.packet))
                argfile += [f"-XMP<={packet}", "-overwrite_original", "-m", str(out), "-execute"]
            jpegs.append(CorpusFile(out, prof.origin, prof.name))
            continue
        out.unlink()
    af = dest / "work" / "args.txt"
    af.write_text("\n".join(argfile) + "\n", encoding="utf-8")
    proc = subprocess.run(
        [exiftool, "-config", str(CONFIG), "-charset", "filename=utf8", "-@", str(af)],
        capture_output=True,
        text=True,
    )
    if (
        "error" in proc.stdout.lower()
        or "Error" in proc.stderr
        or "unchanged" in proc.stdout
        or "Invalid" in proc.stderr
    ):
        raise RuntimeError(f"exiftool failed while building the corpus:\n{proc.stdout}\n{proc.stderr}")

    sidecars = []
    malformed = []
    for f in sorted(SIDECARS.glob("*.xmp")):
        if f.name.startswith("malformed_"):
            target = dest / "malformed" / f.name
            shutil.copyfile(f, target)
            malformed.append(target)
            continue
        target = dest / "sidecar" / f.name
        shutil.copyfile(f, target)
        sidecars.append(CorpusFile(target, _sidecar_origin(f.name), f.stem))
    # broken JPEGs: XMP packets that must be refused, and a truncated header
    base = bases[GENERIC].read_bytes()
    for f in ("malformed_entity_bomb.xmp", "malformed_external_entity.xmp", "malformed_truncated.xmp"):
        target = dest / "malformed" / (Path(f).stem + ".jpg")
        target.write_bytes(_with_xmp(base, (SIDECARS / f).read_bytes()))
        malformed.append(target)
    trunc = dest / "malformed" / "truncated_header.jpg"
    trunc.write_bytes(base[:3000])
    malformed.append(trunc)
    return Corpus(jpegs, sidecars, malformed, _raws(dest / "raw"))


# RAW files committed in tests/data/camera -> name in the corpus, and the sidecar (another tool's) beside it
RAWS = {
    "nikon_d1_truncated_75k.nef": ("DSC_0002.NEF", "darktable_DSC_0002.NEF.xmp", "DSC_0002.NEF.xmp"),
    "CRW_0113.CRW": ("CRW_0113.CRW", "lightroom_DSC_0001.xmp", "CRW_0113.xmp"),
    "sony_a330_truncated_100k.arw": ("DSC_0011.ARW", "on1_DSC_0011.ARW.xmp", "DSC_0011.ARW.xmp"),
    "P003913.KDC": ("P003913.KDC", None, None),
}


def _raws(dest: Path) -> list[Path]:
    """RAW files (never written by ltag) with other tools' sidecars in both naming styles beside them."""
    dest.mkdir(exist_ok=True)
    out = []
    for src_name, (name, sidecar, sidecar_name) in RAWS.items():
        src = next((d / src_name for d in CAMERA_DIRS[:1] if (d / src_name).is_file()), None)
        if src is None:
            continue
        shutil.copyfile(src, dest / name)
        out.append(dest / name)
        if sidecar:
            shutil.copyfile(SIDECARS / sidecar, dest / sidecar_name)
    return out


def _sidecar_origin(name: str) -> str:
    key = name.split("_")[0]
    return {
        "lightroom": "Adobe Lightroom Classic",
        "lightroom3": "Adobe Lightroom 3",
        "darktable": "darktable",
        "darktable2": "darktable",
        "captureone": "Capture One",
        "digikam": "digiKam",
        "photomechanic": "Photo Mechanic",
        "acdsee": "ACDSee",
        "bridge": "Adobe Bridge",
        "studio": "Acme Studio DAM",
        "exiftool": "ExifTool",
        "on1": "ON1 Photo RAW",
        "windows": "Windows Photos",
    }.get(key, key)


if __name__ == "__main__":
    c = build_corpus(Path(sys.argv[1]))
    print(
        f"{len(c.jpegs)} JPEGs, {len(c.sidecars)} sidecars, {len(c.malformed)} malformed, "
        f"{len(c.origins)} makers/programs: {sorted(c.origins)}"
    )
