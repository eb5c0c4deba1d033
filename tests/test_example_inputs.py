"""The pack copies the templates' example photos into ComfyUI's input/ only where the name is free."""

from __future__ import annotations

import os

from blended_diffusion_pack.nodes.examples import EXAMPLES, install_example_inputs

NAMES = sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in (".png", ".mp4"))


def test_the_templates_examples_are_shipped():
    assert NAMES == ["blended_landscape.png", "blended_object.png", "blended_scribble.png", "blended_subject.png",
                     "blended_video.mp4", "blended_video_mask.png"]


def test_copies_into_an_empty_input_folder_once(tmp_path):
    input_dir = tmp_path / "input"
    assert install_example_inputs(input_dir) == NAMES
    for name in NAMES:
        assert (input_dir / name).read_bytes() == (EXAMPLES / name).read_bytes()
    assert install_example_inputs(input_dir) == []
    assert sorted(os.listdir(input_dir)) == NAMES  # no temporary files left behind


def test_never_overwrites_a_users_file(tmp_path):
    (tmp_path / "blended_object.png").write_bytes(b"the user's own picture")
    copied = install_example_inputs(tmp_path)
    assert "blended_object.png" not in copied and len(copied) == len(NAMES) - 1
    assert (tmp_path / "blended_object.png").read_bytes() == b"the user's own picture"


def test_an_input_folder_that_cannot_be_written_is_reported_not_fatal(tmp_path, caplog):
    blocked = tmp_path / "input"
    blocked.write_text("a file where the folder should be")
    assert install_example_inputs(blocked) == []
    assert "could not copy the example" in caplog.text
