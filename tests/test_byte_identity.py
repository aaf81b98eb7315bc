"""Byte identity across refactors: a fixed GNT corpus converts to shards whose sha256s equal those
that gntkit wrote before the source-format seam and the staged convert (commit 2720351, measured
with that commit's code on this corpus). Shard contents must not change when code moves."""

import numpy as np
import pytest

from gntkit.formats.gnt import encode_records
from gntkit.samples.preprocess import Preprocess
from gntkit.shards.convert import convert

GOLDEN = {
    "tfrecord-64": [
        "663cfbe5838d97b1979c7f40f3bc7252b789499c2e5e9c6c54f5b4c78c3c2e68",
        "450069ca0a19bef509c52e1644469e6e23c32f3452a1132da00932e3abb446e7",
        "232797c7549af8f965482d97a599f7ee060f95c498bf9c5b0e591adf68d5adbe",
        "9ef517a6d4250e1e4ed32ea0ce264221cffe4368a1dd25c695cde94f07821e4e"
    ],
    "tfrecord-raw": [
        "977675cac63f690011c0b254b1cc91ea2f6f59beb06eb137a5fd548c16a32eb6",
        "a34766611090ba01dcd86642a5a8b4a40c80ece839f25f6055aefed069ed6505",
        "ae21549fa1270b1ba8832afe9037898ae51d5110815aebc49f041eca1c0f6973",
        "3fed9d5bf15e97cb4c2c0430078f2f8b00d4086d542740e30901d3f898f176e1"
    ],
    "hdf5-64": [
        "f519e0fc463d693afd8b505c74711acd14d502270c8bf3fcc573ca63735c23bf",
        "134b002d7f9dbeda903cc42fc4092b80023206c94fa006b6d1a3caaad37e284c",
        "0fc875d0e53dd042d3c92c3c76a4c5d51772e8365b35480fd4adcd787be6fe56",
        "a456790fb7165d83ac43e893b8a236bdfbef5b0dbead9b01f541be1065fcc989"
    ],
    "hdf5-raw": [
        "ac894e220c92d787e5c5877a54a9cd5d66b4f4171451a889a8e5f085f9b022d7",
        "9023c60df845a83e5487cd1f66f15db2e0f948ae85e6fbcb9a5b24f5118ff298",
        "d90f1a140f0ff5378c38a531972de59b32895a4264583de20ea33abbc9602119",
        "6dcd404817577955030397fb6a6473ddb41217e1995e9b183a243c2a26214e7c"
    ],
    "webdataset-64": [
        "88ea105c70af7f249480b90166de08bc0ca7a668933154a9bb8c0103500ecab8",
        "4b5e464661aed95ecb89766ffcb7a4dcb526ea726f798c3ea2c84ee8b857fc91",
        "7e37e4f32011b428625ab6345b64f32c5cae737f0b0c2d500ad2e2aeeb77c034",
        "7dfe171e14679d920c0cca6e0b2ab7748d358c79d0659ba199adbf0ebb7c548a"
    ],
    "webdataset-raw": [
        "0d5cd175ca59bd8c93a317a1d48b4c89ee52ff1503b32c64cac9716c4f2d83e8",
        "6d0ea72f887237d6dd7b6445e1a02485cf673d2e7901daf6a17dd34c3484a01c",
        "c3ce04289b8994f9b5a2ee5e7f903214f2da9df6f31f52f0ce503bc98cef220c",
        "43e9db8cb78d5843a07a262fa2aded4b3a3322a27ff735bd1da465f039973ac5"
    ]
}


def write_corpus(folder):
    rng = np.random.default_rng(1234)
    folder.mkdir(parents=True, exist_ok=True)
    codes = [0xB0A1 + i for i in range(6)] + [0x4100, 0x3100]
    for writer in (1001, 1002, 1003):
        bitmaps, tags = [], []
        for code in codes:
            h, w = int(rng.integers(8, 40)), int(rng.integers(8, 40))
            img = np.full((h, w), 255, np.uint8)
            img[rng.random((h, w)) < 0.3] = rng.integers(0, 200, size=int((rng.random((h, w)) < 0.3).sum()) or 1)[:1]
            bitmaps.append(img)
            tags.append(code)
        (folder / f"{writer}-f.gnt").write_bytes(encode_records(tags, bitmaps))
    return folder


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_shards_are_byte_identical_to_before_the_refactor(tmp_path, case):
    to, label = case.split("-")
    preprocess = Preprocess() if label == "64" else Preprocess(raw=True)
    manifest = convert(write_corpus(tmp_path / "src"), tmp_path / case, to=to, charset="data", preprocess=preprocess,
                       shard_records=7, workers=1, hash_sources=False)
    assert [s["sha256"] for split in manifest["splits"].values() for s in split["shards"]] == GOLDEN[case]
