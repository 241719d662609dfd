import json

import pytest
from PIL import Image

from detector.answer import format_answer
from trainer.data import IGNORE_INDEX, Collator, conversation_record, normalize_answer, read_records


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    from transformers import AutoProcessor

    from detector.tiny import build_tiny_checkpoint

    return AutoProcessor.from_pretrained(str(build_tiny_checkpoint(tmp_path_factory.mktemp("tiny"))))


def test_loss_covers_the_answer_tokens_only(processor):
    answers = [format_answer("manipulated", "the shadow falls the wrong way."), format_answer("authentic")]
    batch = Collator(processor)(
        [
            {"image": Image.new("RGB", (56, 84), "red"), "answer": answers[0]},
            {"image": Image.new("RGB", (112, 56), "blue"), "answer": answers[1]},
        ]
    )
    tok = processor.tokenizer
    for row, answer in enumerate(answers):
        kept = batch["labels"][row][batch["labels"][row] != IGNORE_INDEX].tolist()
        assert tok.decode(kept) == answer + "<|im_end|>"
    assert "pixel_values" in batch and "image_grid_thw" in batch


def test_records_round_trip_and_answers_are_normalized(tmp_path):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    recs = [conversation_record("a.png", "Verdict: synthesized\nReasons:   too   smooth ", id="x")]
    recs.append(
        {
            "image": "a.png",
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "Verdict: authentic"},
            ],
        }
    )
    (tmp_path / "d.json").write_text(json.dumps(recs))
    out = read_records(tmp_path / "d.json")
    assert [e.label for e in out] == ["synthesized", "authentic"] and out[0].image == tmp_path / "a.png"
    assert normalize_answer(out[0].answer) == format_answer("synthesized", "too smooth")
    (tmp_path / "bad.json").write_text(json.dumps([conversation_record("a.png", "I think it is fake")]))
    with pytest.raises(ValueError, match="Verdict"):
        read_records(tmp_path / "bad.json")
