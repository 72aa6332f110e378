"""Bounded reading of features files: the sizes every format declares are checked against a bound before
anything is inflated, so a zip bomb is refused (HTTP 422) while the reader's memory stays flat."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import redis
from numpy.lib import format as npy

from pidcore.features.files import MAX_MEMBERS, FeaturesFileError, read_features, write_features
from tests.service.test_api_routes import make_client, redis_url  # noqa: F401 - fixture

GIB, MIB = 1 << 30, 1 << 20
RSS_SCRIPT = textwrap.dedent("""
    import resource, sys
    from pidcore.features.files import FeaturesFileError, read_features
    data = open(sys.argv[1], "rb").read()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        read_features(data, filename="bomb.npz", max_bytes=int(sys.argv[2]))
        outcome = "read"
    except FeaturesFileError as error:
        outcome = str(error)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(before, after, outcome, sep="\\n")
""")


def _write_npy_member(archive: zipfile.ZipFile, name: str, shape: tuple, data_bytes: int) -> None:
    """A float32 .npy member declaring `shape`, holding `data_bytes` zero bytes, streamed 1 MiB at a time."""
    with archive.open(name, "w", force_zip64=True) as member:
        npy.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": shape})
        chunk = bytes(MIB)
        for start in range(0, data_bytes, MIB):
            member.write(chunk[:min(MIB, data_bytes - start)])


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory):
    """An .npz of about 1 MiB whose one member inflates to 1 GiB of zeros (built without holding 1 GiB)."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        _write_npy_member(archive, "vision.npy", (GIB // 4,), GIB)
    return path


def _peak_rss_kib(path, max_bytes: int) -> tuple[int, int, str]:
    """(peak RSS before, after reading `path`, outcome) in a fresh interpreter."""
    lines = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(path), str(max_bytes)], capture_output=True,
                           text=True, timeout=300, check=True).stdout.splitlines()
    return int(lines[0]), int(lines[1]), lines[2]


def test_a_zip_bomb_is_refused_before_it_inflates(zip_bomb):
    assert zip_bomb.stat().st_size < 2 * MIB
    before, after, outcome = _peak_rss_kib(zip_bomb, 512 * MIB)
    assert "too large once decoded: npz member 'vision.npy' declares 1,073,741,952 bytes" in outcome
    assert "nothing was inflated" in outcome
    assert (after - before) * 1024 < 16 * MIB, f"peak RSS rose by {(after - before) / 1024:.0f} MiB"


def test_the_api_answers_422_for_a_zip_bomb(zip_bomb, redis_url):  # noqa: F811
    redis.Redis.from_url(redis_url).flushdb()
    api = make_client(redis_url)
    response = api.post("/api/v1/features?filename=bomb.npz", content=zip_bomb.read_bytes(),
                        headers={"content-type": "application/octet-stream"})
    assert response.status_code == 422
    assert "too large once decoded" in response.json()["detail"]
    assert f"bound of {2 * 256 * MIB:,} bytes" in response.json()["detail"]  # twice PIDFLOW_MAX_UPLOAD_BYTES


def _small_file(tmp_path, suffix: str):
    path = tmp_path / f"small{suffix}"
    rng = np.random.default_rng(0)
    write_features(path, vision=rng.normal(size=(3, 20, 4)), language=rng.normal(size=(3, 20, 4)),
                   target=rng.normal(size=20))
    return path.read_bytes()


@pytest.mark.parametrize("suffix", [".npz", ".safetensors", ".pt"])
def test_every_format_is_read_within_its_bound_and_refused_over_it(tmp_path, suffix):
    data = _small_file(tmp_path, suffix)
    assert read_features(data, filename="f" + suffix, max_bytes=len(data)).features.vision.shape == (3, 20, 4)
    with pytest.raises(FeaturesFileError, match="too large once decoded.*over this reader's bound of 500 bytes"):
        read_features(data, filename="f" + suffix, max_bytes=500)


def test_an_npy_header_declaring_more_than_its_member_holds(tmp_path):
    path = tmp_path / "lies.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        _write_npy_member(archive, "vision.npy", (10**12,), 64)
    with pytest.raises(FeaturesFileError, match=r"declares \(1000000000000,\) float32 \(4,000,000,000,000 bytes\) "
                                                r"but the member holds 64"):
        read_features(path)


def test_an_npz_of_too_many_members(tmp_path):
    path = tmp_path / "many.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for index in range(MAX_MEMBERS + 1):
            archive.writestr(f"m{index}.npy", b"")
    with pytest.raises(FeaturesFileError, match=f"{MAX_MEMBERS + 1:,} members; at most {MAX_MEMBERS} are read"):
        read_features(path)


def test_a_safetensors_header_declaring_a_terabyte(tmp_path):
    header = json.dumps({"vision": {"dtype": "F32", "shape": [2**38], "data_offsets": [0, 2**40]}}).encode()
    data = struct.pack("<Q", len(header)) + header + bytes(16)
    with pytest.raises(FeaturesFileError, match="safetensors tensor 'vision' declares 1,099,511,627,776 bytes"):
        read_features(data, filename="x.safetensors", max_bytes=GIB)


def test_torch_archives_must_be_stored_and_zip_format(tmp_path):
    import torch

    data = _small_file(tmp_path, ".pt")
    deflated = tmp_path / "deflated.pt"
    with zipfile.ZipFile(tmp_path / "small.pt") as source, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            out.writestr(info.filename, source.read(info))
    with pytest.raises(FeaturesFileError, match="member '.*' is compressed"):
        read_features(deflated)
    legacy = tmp_path / "legacy.pt"
    torch.save({"vision": torch.zeros(3, 20, 4)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(FeaturesFileError, match="torch's zip format .*legacy format is not read"):
        read_features(legacy)
    assert read_features(data, filename="ok.pt").format == "pt"
