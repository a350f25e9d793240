"""The request handling of the serving families (pipelines/serving), without models or MLflow."""
from __future__ import annotations

import base64
import math

import numpy as np
import pytest

from pipelines import serving
from pipelines.serving import speech, visual


def test_every_registered_family_declares_columns_example_and_a_loader():
    """Each family's example uses only its declared input columns and has every required one.

    Fails if a family's example drifts from its signature (MLflow would reject the logged example).
    """
    assert set(serving.names()) >= {"gram", "bt", "lisa", "speech", "visual"}
    for name in serving.names():
        family = serving.family(name)
        declared = {c.name for c in family.inputs}
        required = {c.name for c in family.inputs if c.required}
        for row in family.example(None):
            assert set(row) <= declared and required <= set(row), name
        assert "{path}" in family.loading_call and "AutoModelForCausalLM" not in family.loading_call


def test_params_are_checked_and_defaulted():
    """Unknown inference params are an error (not silently ignored); given ones override the defaults."""
    assert serving.checked_params({"beam_size": 2}, {"beam_size": 5, "batch_size": 16}) == {"beam_size": 2, "batch_size": 16}
    with pytest.raises(ValueError, match="beam"):
        serving.checked_params({"beam": 2}, {"beam_size": 5})


def test_missing_and_nan_cells_read_as_absent():
    """pandas fills a column a row lacks with NaN: that is 'absent', and a required field says which key."""
    assert serving.text({"a": float("nan")}, "a", required=False) is None
    with pytest.raises(ValueError, match="'prompt'"):
        serving.text({"prompt": None}, "prompt")


def test_speech_requests_take_a_file_or_samples_at_any_rate(tmp_path):
    """A stereo file is mixed to mono; 8 kHz samples are resampled to 16 kHz; neither is one clear error."""
    import soundfile as sf

    t = np.arange(8000) / 8000
    tone = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    sf.write(tmp_path / "a.wav", np.stack([tone, tone], axis=1), 8000)
    from_file = speech.waveform({"audio": str(tmp_path / "a.wav")})
    from_samples = speech.waveform({"samples": tone.tolist(), "sample_rate": 8000, "audio": float("nan")})
    assert len(from_samples) == 16000 and len(from_file) == 16000
    assert np.allclose(from_file, from_samples, atol=1e-3)
    assert len(speech.waveform({"samples": [0.0] * 320})) == 320  # 16 kHz by default
    with pytest.raises(ValueError, match="'audio'.*'samples'"):
        speech.waveform({"sample_rate": 16000})


def test_visual_images_come_from_a_path_or_inline_base64(tmp_path):
    """Inline base64 gives the pixels the same file gives by path; bad base64 names the column."""
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "x.png")
    encoded = base64.b64encode((tmp_path / "x.png").read_bytes()).decode()
    by_path = visual._pixels({"image": str(tmp_path / "x.png")}, 16)
    inline = visual._pixels({"image_base64": encoded, "image": math.nan}, 16)
    assert by_path.shape == (16, 16, 3) and np.array_equal(by_path, inline)
    assert visual._pixels({"prompt": "text only"}, 16) is None
    with pytest.raises(ValueError, match="image_base64"):
        visual._pixels({"image_base64": "not base64!"}, 16)
