"""The weighted-prompt syntax: what a ComfyUI text box turns into, and the errors it can raise."""

import pytest

from blended.errors import InputError
from blended.prompts import WeightedPrompt, combine, parse_prompts, prompt_set


def test_lines_bars_and_weights():
    text = "a bowl of cherries\n  red fruit : 0.5 | a photo:2\n\n|  | a sign: open\nthe year 1e1:-1"
    assert parse_prompts(text) == [
        WeightedPrompt("a bowl of cherries", 1.0),
        WeightedPrompt("red fruit", 0.5),
        WeightedPrompt("a photo", 2.0),
        WeightedPrompt("a sign: open", 1.0),  # a colon followed by words is part of the prompt
        WeightedPrompt("the year 1e1", -1.0),
    ]
    assert parse_prompts("  two   spaces\tand a tab ") == [WeightedPrompt("two spaces and a tab")]
    assert parse_prompts("") == parse_prompts(None) == parse_prompts(" \n | \n") == []


def test_single_prompt_is_exactly_weight_one():
    s = prompt_set("a red ball")
    assert s.is_single and s.texts == ["a red ball"] and s.weights == [1.0]
    assert prompt_set("a red ball:3").weights == [1.0]  # normalised by the positive sum
    assert not prompt_set("a red ball", "blurry").is_single


def test_normalised_by_the_positive_weights():
    s = prompt_set("a cat:3 | a dog:1 | a hat:-2", "blurry | text:0.5")
    assert dict(zip(s.texts, s.weights)) == {"a cat": 0.75, "a dog": 0.25, "a hat": -0.5, "blurry": -0.25,
                                             "text": -0.125}
    assert s.positive == ["a cat", "a dog"]
    # the same text twice is one prompt with the summed weight; a zero drops out
    s = prompt_set("a cat | a cat:0.5 | a dog:0", "a cat:0.5")
    assert s.texts == ["a cat"] and s.weights == [1.0]


@pytest.mark.parametrize(
    "prompt, negative, message",
    [
        ("", "", "prompt is empty"),
        (" | \n |", "blurry", "prompt is empty"),
        ("a cat:1 | a cat:-1", "", "weights cancel out"),
        ("a cat", "a cat", "weights cancel out"),
        ("a cat:2 | a dog:-1", "a cat:3", "weights cancel out"),
        ("a cat:0", "", "prompt has no prompt with a positive weight"),
        ("a cat:-1 | a dog:-2", "", "prompt has no prompt with a positive weight"),
        ("a cat", "blurry:-1", "negative_prompt: 'blurry' has weight -1"),
        ("a cat:nan", "", "prompt: 'a cat:nan' has weight nan"),
        ("a cat", "blurry:inf", "negative_prompt: 'blurry:inf' has weight inf"),
        (":0.5", "", "weight without a prompt"),
    ],
)
def test_errors_name_the_input_and_the_fix(prompt, negative, message):
    with pytest.raises(InputError, match=message):
        prompt_set(prompt, negative)


def test_custom_input_names_in_messages():
    with pytest.raises(InputError, match="scene_prompt is empty"):
        combine(parse_prompts("", "scene_prompt"), [], "scene_prompt")
    with pytest.raises(InputError, match="scene_prompt must be text"):
        parse_prompts(3, "scene_prompt")
