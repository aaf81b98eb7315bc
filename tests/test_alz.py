"""ALZip container: every method against the source bytes and the plain-Python reference, the
fixtures proven genuine by Debian's unalz, nesting in a zip, refusals, damage, fuzzing."""

import io
import shutil
import subprocess
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gntkit.containers.alz import AlzContainer
from gntkit.containers.alz_bzip2 import alz_bzip2_blocks
from gntkit.errors import FormatError, GntkitError
from gntkit.tools.fixtures.alz import Member, alz_bytes, alz_bzip2, sample_members, write_alz, write_split, zero_bzip2_crc
from gntkit.tools.reference.alz import naive_bzip2_blocks, read_archive

UNALZ = shutil.which("unalz")
needs_unalz = pytest.mark.skipif(UNALZ is None, reason="Debian's `unalz` is not installed (apt-get install unalz; CI installs it)")


def container_of(data: bytes, path="t.alz") -> AlzContainer:
    return AlzContainer(lambda: io.BytesIO(data), path)


def file_members(members):
    return [m for m in members if not m.directory]


def test_every_method_matches_source_and_reference():
    members = sample_members()
    data = alz_bytes(members)
    alz = container_of(data)
    assert alz.entries() == [(m.name, len(m.data)) for m in file_members(members)]
    for member in file_members(members):
        assert alz.read(member.name) == member.data
    reference, reason = read_archive(data)
    assert reason is None
    assert [(e["name"], e["size"]) for e in reference if not e["directory"]] == alz.entries()
    for entry, ref in zip(alz.index(), reference):
        ours = (entry.header_offset, entry.method, entry.crc32, entry.compressed_size)
        assert ours == (ref["offset"], ref["method"], ref["crc"], ref["compressed_size"])
        if ref["data"] is not None and not ref["directory"]:
            assert alz.read(entry.name) == ref["data"]


@pytest.mark.numba
@pytest.mark.parametrize("seed", range(4))
def test_bzip2_kernels_match_reference(seed):
    import random

    rng = random.Random(seed)
    kinds = [
        bytes(rng.choice(b"ab") for _ in range(rng.randrange(1, 3000))),
        bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 3000))),
        b"".join(bytes([rng.randrange(256)]) * rng.randrange(1, 600) for _ in range(rng.randrange(1, 30))),
        bytes([rng.randrange(256)]),
    ]
    for data in kinds:
        stream = alz_bzip2(data)
        assert b"".join(alz_bzip2_blocks(stream, "x")) == b"".join(naive_bzip2_blocks(stream)) == data
    assert list(alz_bzip2_blocks(alz_bzip2(b""), "x")) == []


@pytest.mark.numba
def test_bzip2_kernels_refuse_damage():
    stream = alz_bzip2(b"hello world " * 40)
    with pytest.raises(FormatError, match="block marker"):
        list(alz_bzip2_blocks(b"XLZ\x01" + stream[4:], "a.alz:m"))
    with pytest.raises(FormatError, match=r"a\.alz:m at byte \d+: expected .*truncated"):
        list(alz_bzip2_blocks(stream[:20], "a.alz:m"))
    for cut in range(4, len(stream) - 1, 7):
        with pytest.raises(FormatError):
            list(alz_bzip2_blocks(stream[:cut], "a.alz:m"))


@pytest.mark.slow
def test_bzip2_variant_multi_block_and_runs():
    # > 900 kB: several ALZip bzip2 blocks; long runs exercise RUNA/RUNB and the RLE1 counts.
    import random

    rng = random.Random(3)
    runs = b"".join(bytes([rng.randrange(4)]) * rng.randrange(1, 300) for _ in range(300))
    data = bytes(rng.choice(b"abcdefghij") for _ in range(920_000)) + runs
    stream = alz_bzip2(data)
    assert stream[:4] == b"DLZ\x01"
    blocks = list(alz_bzip2_blocks(stream, "x"))
    assert len(blocks) >= 2 and b"".join(blocks) == data


def test_streaming_open_and_forward_reads():
    members = sample_members()
    opened = []

    def opener():
        opened.append(1)
        return io.BytesIO(alz_bytes(members))

    alz = AlzContainer(opener, "s.alz")
    alz.entries()
    for member in file_members(members):  # archive order: one reopen after listing, then forward only
        with alz.open(member.name) as stream:
            chunks = iter(lambda: stream.read(777), b"")
            assert b"".join(chunks) == member.data
    assert len(opened) == 2


def test_alz_nested_in_zip(tmp_path):
    members = sample_members()
    outer = tmp_path / "HWDB1.1trn_gnt.zip"
    with zipfile.ZipFile(outer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("HWDB1.1trn_gnt.alz", alz_bytes(members))
    holder = zipfile.ZipFile(outer)
    alz = AlzContainer(lambda: holder.open("HWDB1.1trn_gnt.alz"), f"{outer}:HWDB1.1trn_gnt.alz")
    for member in file_members(members):
        assert alz.read(member.name) == member.data
    alz.close()
    holder.close()


def test_sniff():
    assert AlzContainer.sniff(b"ALZ\x01\x0a\x00\x00\x00")
    assert not AlzContainer.sniff(b"PK\x03\x04") and not AlzContainer.sniff(b"")


def test_encrypted_member_refused_others_read():
    data = alz_bytes([Member("secret.gnt", b"s" * 100, password=b"pw"), Member("plain.gnt", b"p" * 50, method=0)])
    alz = container_of(data, "enc.alz")
    assert alz.read("plain.gnt") == b"p" * 50
    with pytest.raises(GntkitError, match=r"enc\.alz:secret\.gnt: the member is encrypted"):
        alz.read("secret.gnt")


def test_split_volumes_refused(tmp_path):
    members = sample_members()
    first, second = write_split(tmp_path / "s.alz", members, 3000)
    with pytest.raises(GntkitError, match="first volume of a split"):
        AlzContainer(lambda: open(first, "rb"), str(first)).entries()
    with pytest.raises(GntkitError, match="volume 2 of a split"):
        AlzContainer(lambda: open(second, "rb"), str(second)).entries()
    # A tail we did not write: the .a00 beside the file still says "split".
    first.write_bytes(first.read_bytes()[:-16] + bytes(16))
    with pytest.raises(GntkitError, match="first volume of a split"):
        AlzContainer(lambda: open(first, "rb"), str(first)).entries()
    second.unlink()
    with pytest.raises(FormatError, match="truncated"):
        AlzContainer(lambda: open(first, "rb"), str(first)).entries()


@pytest.mark.parametrize("damage, expected", [
    (lambda d: d[:5], "8-byte ALZip archive header"),
    (lambda d: b"XLZ\x01" + d[4:], "archive header"),
    (lambda d: d[:-4], "end of the archive"),
    (lambda d: d[:40], "truncated"),
    (lambda d: d.replace(b"CLZ\x01", b"QLZ\x01"), "ALZip record"),
])
def test_damaged_directory(damage, expected):
    data = damage(alz_bytes(sample_members()))
    with pytest.raises(FormatError, match=expected):
        container_of(data).entries()


def test_damaged_member_data_names_member_and_offset():
    members = [Member("a.gnt", b"abc" * 1000, method=2), Member("b.gnt", b"xyz" * 10, method=0)]
    data = bytearray(alz_bytes(members))
    index = container_of(bytes(data)).index()
    data[index[1].data_offset] ^= 0xFF  # stored member: CRC catches it
    with pytest.raises(FormatError, match=r"t\.alz:b\.gnt at byte 30: expected CRC-32"):
        container_of(bytes(data)).read("b.gnt")
    data = bytearray(alz_bytes(members))
    data[index[0].data_offset + 1: index[0].data_offset + 8] = b"\xff" * 7
    with pytest.raises(FormatError, match=r"t\.alz:a\.gnt"):
        container_of(bytes(data)).read("a.gnt")


def test_unknown_member_and_bad_method():
    alz = container_of(alz_bytes([Member("a.gnt", b"a", method=0)]))
    with pytest.raises(GntkitError, match="expected a member named 'nope'"):
        alz.read("nope")
    data = bytearray(alz_bytes([Member("a.gnt", b"a", method=0)]))
    data[8 + 13] = 7
    with pytest.raises(FormatError, match="compression method"):
        container_of(bytes(data)).entries()


@needs_unalz
def test_fixtures_are_genuine_unalz_extracts_them(tmp_path):
    members = [Member("zero.bin", zero_bzip2_crc(b"q" * 2000 + bytes(range(200))), method=1)] + sample_members()
    archive = write_alz(tmp_path / "every.alz", members)
    out = tmp_path / "out"
    result = subprocess.run([UNALZ, "-d", str(out), str(archive)], capture_output=True, text=True, timeout=60)
    assert "failed" not in result.stdout, result.stdout
    for member in file_members(members):
        assert (out / member.name).read_bytes() == member.data, member.name
    assert (out / "data").is_dir()


@needs_unalz
def test_encrypted_and_split_fixtures_are_genuine(tmp_path):
    secret = b"hello " * 300
    archive = write_alz(tmp_path / "enc.alz", [Member("secret.bin", secret, password=b"pw")])
    out = tmp_path / "enc"
    subprocess.run([UNALZ, "-pwd", "pw", "-d", str(out), str(archive)], capture_output=True, timeout=60, check=True)
    assert (out / "secret.bin").read_bytes() == secret
    members = sample_members()
    first, _ = write_split(tmp_path / "split.alz", members, 3000)
    out = tmp_path / "split"
    result = subprocess.run([UNALZ, "-d", str(out), str(first)], capture_output=True, text=True, timeout=60)
    assert "failed" not in result.stdout, result.stdout
    for member in file_members(members):
        assert (out / member.name).read_bytes() == member.data, member.name


_SEED_ARCHIVE = alz_bytes([Member("a.gnt", b"abcabc" * 200, method=2), Member("b.gnt", bytes(range(256)), method=0),
                           Member("c.gnt", b"zzzz" * 100 + b"yx" * 50, method=1)])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_mutated_archives_fail_cleanly(data):
    raw = bytearray(_SEED_ARCHIVE)
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(8, len(raw)))
    alz = container_of(bytes(raw[:cut]))
    try:
        for name, size in alz.entries():
            assert len(alz.read(name)) == size
    except GntkitError:
        pass


_SEED_BZIP2 = alz_bzip2(b"".join(bytes([i % 7]) * (i % 11 + 1) for i in range(400)) + bytes(range(256)))


@pytest.mark.numba
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_bzip2_kernels_fail_cleanly(data):
    # The kernels do no bounds checking of their own arrays: damaged streams must end in a status
    # (a FormatError here), never a read past the data or a hang.
    raw = bytearray(_SEED_BZIP2)
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(4, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        for block in alz_bzip2_blocks(bytes(raw[:data.draw(st.integers(4, len(raw)))]), "f.alz:m"):
            assert len(block) <= 900_000 * 52
    except FormatError:
        pass
