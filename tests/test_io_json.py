"""JSON read by pocketsam (files and serve's requests): nesting bounded, every failure one
InputError, and the CLI's JSON inputs (--boxes, eval coco --annotations / --detections)
refuse a hostile file with one error line (issue 24 item 9: a RecursionError before)."""

from __future__ import annotations

import json
import random

import pytest

from pocketsam.cli import main
from pocketsam.errors import InputError
from pocketsam.io import MAX_JSON_DEPTH, json_depth, loads_json, read_json


def _depth(obj) -> int:
    if isinstance(obj, dict):
        return 1 + max(map(_depth, obj.values()), default=0)
    if isinstance(obj, list):
        return 1 + max(map(_depth, obj), default=0)
    return 0


def test_json_depth_ignores_brackets_in_strings():
    """json_depth agrees with the parsed object's depth on random documents whose strings
    hold brackets, quotes and backslashes (escaped every way JSON allows)."""
    rng = random.Random(7)
    tricky = ['[', ']', '{', '}', '"', '\\', '\\"', '\\\\"', '"[{', 'ж[', '\u2028']

    def value(d):
        r = rng.random()
        if d > 7 or r < 0.3:
            return rng.choice([1, 2.5, None, True, "".join(rng.choice(tricky) for _ in range(rng.randint(0, 6)))])
        if r < 0.65:
            return [value(d + 1) for _ in range(rng.randint(0, 3))]
        return {"".join(rng.choice(tricky) for _ in range(3)) + str(i): value(d + 1) for i in range(rng.randint(0, 3))}

    for _ in range(2000):
        obj = value(0)
        text = json.dumps(obj, ensure_ascii=rng.random() < 0.5)
        assert json_depth(text) == json_depth(text.encode()) == _depth(obj), text
    assert json_depth("12") == 0 and json_depth('"[[["') == 0


@pytest.mark.parametrize("text,message", [
    ("[" * 100_000, "100000 levels deep"),
    ('{"a":' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1), f"{MAX_JSON_DEPTH + 1} levels deep"),
    ("[1" + "0" * 5000 + "]", "digits"),
    ("{nope", "not valid JSON (Expecting property name"),
    (b'["\xff"]', "not UTF-8"),
])
def test_loads_json_is_one_input_error(text, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        loads_json(text, "the body")
    nested = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert _depth(loads_json(nested)) == MAX_JSON_DEPTH  # the bound itself is accepted


def test_cli_json_inputs_refuse_deep_nesting(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    with pytest.raises(InputError, match="levels deep"):
        read_json(deep, "detections file")
    from pathlib import Path

    scene = Path(__file__).resolve().parents[1] / "examples" / "scene.jpg"
    assert main(["everything", str(scene), "--mode", "boxes", "--boxes", str(deep), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "levels deep" in err and err.startswith("error:") and err.count("\n") == 1, err

    images = tmp_path / "images"
    images.mkdir()
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "x"}]}))
    for annotations, detections in [(deep, good), (good, deep)]:
        assert main(["eval", "coco", "--images", str(images), "--annotations", str(annotations),
                     "--detections", str(detections)]) == 2
        err = capsys.readouterr().err
        assert "levels deep" in err and err.startswith("error:") and err.count("\n") == 1, err
