from __future__ import annotations

import pytest
import torch
from PIL import Image

from seed_core.errors import ImageMetadataError, InvalidRequestError, OutputExistsError
from seed_core.images import from_pil, load_image, read_metadata, save_png, to_pil
from seed_core.requests import AppliedAccelerator, EditRequest, GenerateRequest, GenerationResult


def test_png_carries_metadata_and_reads_it_back(tmp_path):
    request = GenerateRequest("a red circle", seed=7, steps=4)
    result = GenerationResult(
        [Image.new("RGB", (8, 8), "red")],
        request,
        "toy",
        [AppliedAccelerator("int8", "weights", {"per_channel": True})],
        [7],
        {"steps": 4},
        0.25,
    )
    path = save_png(result.images[0], tmp_path / "out.png", result.metadata(0))
    data = read_metadata(path)
    assert data["request"]["prompt"] == "a red circle" and data["request"]["task"] == "t2i"
    assert data["model"] == "toy" and data["seed"] == 7 and data["settings"] == {"steps": 4}
    assert data["accelerators"] == [{"name": "int8", "kind": "weights", "options": {"per_channel": True}}]
    assert data["versions"]["seed-core"] == "0.1.0" and "python" in data["versions"]
    with Image.open(path) as im:
        assert im.getpixel((0, 0)) == (255, 0, 0)


def test_save_refuses_overwrite(tmp_path):
    path = save_png(Image.new("RGB", (4, 4)), tmp_path / "a.png", {})
    with pytest.raises(OutputExistsError, match="a.png already exists"):
        save_png(Image.new("RGB", (4, 4)), path, {})
    save_png(Image.new("RGB", (4, 4), "blue"), path, {"x": 1}, force=True)
    assert read_metadata(path) == {"x": 1}


def test_metadata_errors(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    with pytest.raises(ImageMetadataError, match="has no Seed metadata"):
        read_metadata(tmp_path / "plain.png")
    with pytest.raises(ImageMetadataError, match="no such file"):
        read_metadata(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ImageMetadataError, match="not a readable image"):
        read_metadata(tmp_path / "junk.png")
    with pytest.raises(InvalidRequestError, match="not a readable image"):
        load_image(tmp_path / "junk.png")


def test_tensor_pil_round_trip():
    x = torch.rand(3, 5, 7)
    back = from_pil(to_pil(x))
    assert back.shape == (3, 5, 7)
    torch.testing.assert_close(back, x, atol=1 / 255, rtol=0)
    assert to_pil(torch.zeros(1, 4, 4)).mode == "L"
    with pytest.raises(ValueError):
        to_pil(torch.zeros(4, 4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": "  "}, "the prompt is empty"),
        ({"prompt": "x", "width": 4}, "width must be between 8 and 8192"),
        ({"prompt": "x", "steps": 0}, "steps must be between 1 and 1000"),
        ({"prompt": "x", "guidance": -1.0}, "guidance must be between 0 and 100"),
        ({"prompt": "x", "guidance": float("inf")}, "guidance must be between 0 and 100"),
        ({"prompt": "x", "shift": float("nan")}, "shift must be between 0.01 and 100"),
        ({"prompt": "x", "num_images": 0}, "num_images must be between 1 and 64"),
        ({"prompt": "x", "shift": 0.0}, "shift must be between 0.01 and 100"),
        ({"prompt": "x", "seed": -1}, "seed must be between"),
        ({"prompt": "x", "references": ["/nonexistent/ref.png"]}, "reference image /nonexistent/ref.png"),
    ],
)
def test_generate_request_validation(kwargs, message):
    with pytest.raises(InvalidRequestError, match=message):
        GenerateRequest(**kwargs).validate()


def test_an_empty_video_prompt_names_the_video():
    from seed_core.requests import VideoRequest

    with pytest.raises(InvalidRequestError, match="describe the video to generate"):
        VideoRequest("  ").validate()


def test_edit_request_validation(tmp_path):
    with pytest.raises(InvalidRequestError, match="needs a source image"):
        EditRequest("make it blue").validate()
    with pytest.raises(InvalidRequestError, match="does not exist"):
        EditRequest("make it blue", image=str(tmp_path / "x.png")).validate()
    with pytest.raises(InvalidRequestError, match="is a folder; give an image file"):  # not "does not exist"
        EditRequest("make it blue", image=str(tmp_path)).validate()
    with pytest.raises(InvalidRequestError, match="reference image .* is a folder"):
        GenerateRequest("x", references=[str(tmp_path)]).validate()
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    with pytest.raises(InvalidRequestError, match="instruction is empty"):
        EditRequest("", image=str(tmp_path / "x.png")).validate()
    EditRequest("make it blue", image=str(tmp_path / "x.png")).validate()
    assert EditRequest("i", image="x").to_dict()["task"] == "edit"
