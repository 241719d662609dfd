"""The forensic tools' pure parts: the metadata reader on hostile files, regions from the label form,
search matching, and the item page with a lock and an undo offer (no network)."""

from __future__ import annotations

import io
import time
from types import SimpleNamespace

import pytest
from PIL import Image, PngImagePlugin

from core.contracts.verdicts import Label
from misinfo import provenance_samples as ps
from misinfo.samples import scene
from moderation.auth import User
from moderation.locks import Lock
from moderation.metadata import MAX_VALUE, read_metadata
from moderation.pages import env, parse_regions
from moderation.search import SearchQuery, _matches
from moderation.store import UndoTicket
from tests.unit.moderation.test_moderation import IMAGE_ID, _item


def png_with_text(**chunks: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    buf = io.BytesIO()
    scene(1, (32, 24)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def test_metadata_lists_text_chunks_and_cuts_long_values():
    md = read_metadata(png_with_text(Title="harbour", Comment="x" * (MAX_VALUE + 50)))
    (text,) = md.sections
    fields = {f.key: f for f in text.fields}
    assert (md.format, md.width, md.height) == ("PNG", 32, 24)
    assert fields["Title"].value == "harbour" and not fields["Title"].truncated
    assert len(fields["Comment"].value) == MAX_VALUE and fields["Comment"].truncated


def test_hostile_xmp_is_a_problem_not_a_crash():
    md = read_metadata(ps.billion_laughs_xmp(scene(2, (64, 48))))
    assert md.problems == ["XMP unreadable: refused: DTDForbidden (DTDs and entities are not allowed)"]


def test_a_stripped_file_has_no_sections():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG")
    md = read_metadata(buf.getvalue())
    assert md.sections == [] and md.problems == [] and md.format == "JPEG"


def test_form_regions_are_cut_at_the_edge_and_refused_when_malformed():
    (r,) = parse_regions('[{"x": 0.5, "y": 0.75, "w": 0.8, "h": 0.5}]')
    assert (r.x, r.y, r.w, r.h) == (0.5, 0.75, 0.5, 0.25)
    assert parse_regions("") == [] and parse_regions("[]") == []
    for bad in (
        "[{]",
        '[{"x": 1.0, "y": 0, "w": 0.1, "h": 0.1}]',
        '[{"x": 0, "y": 0, "w": 0, "h": 0.1}]',
        "{}",
    ):
        with pytest.raises(ValueError, match="regions could not be read"):
            parse_regions(bad)
    with pytest.raises(ValueError, match="could not be read"):
        parse_regions("[" + ",".join(['{"x":0,"y":0,"w":0.1,"h":0.1}'] * 33) + "]")


def test_search_matches_id_prefixes_and_every_word():
    event = {"author": "u/RainMan", "text": "Flooded subway station", "source_url": "https://example.org/p/1"}
    image_id = "ab12" + "0" * 60
    assert _matches(SearchQuery(q="AB12"), image_id, event, "manipulated")
    assert _matches(SearchQuery(q="subway rainman"), image_id, event, "manipulated")
    assert not _matches(SearchQuery(q="subway tram"), image_id, event, "manipulated")
    assert _matches(SearchQuery(q="example.org"), image_id, event, "manipulated")
    assert not _matches(SearchQuery(account="drip"), image_id, event, "manipulated")
    assert not _matches(SearchQuery(label="authentic"), image_id, event, "manipulated")


def render_item(user: User, **ctx):  # type: ignore[no-untyped-def]
    request = SimpleNamespace(url=SimpleNamespace(path="/items/x"))
    keys = {"authentic": "a", "manipulated": "m", "synthesized": "s"}
    item = _item()
    return env.get_template("item.jinja").render(
        request=request, nonce="N", keys=keys, user=user, csrf="C", item=item, mine=None,
        can_label=user.has("moderator"), done="", **ctx,
    )  # fmt: skip


def test_the_item_page_shows_another_moderators_lock_and_turns_labeling_off():
    lock = Lock(IMAGE_ID, "<b>omar</b>", time.time() + 60)
    html = render_item(User("ann", "moderator"), lock=lock, undo=None)
    assert "&lt;b&gt;omar&lt;/b&gt;</strong> has this item open" in html
    assert 'id="label-authentic"' in html and html.count("disabled") >= 3
    own = render_item(User("ann", "moderator"), lock=Lock(IMAGE_ID, "ann", time.time() + 60), undo=None)
    assert 'id="lock-banner" role="status" hidden' in own and 'data-lock="mine"' in own


def test_the_item_page_offers_undo_of_the_users_last_label_on_it():
    label = Label(image_id=IMAGE_ID, label="manipulated", moderator_id="ann", verdict_model_version="7")
    ticket = UndoTicket(label, None, 0.5, "e", time.time() + 30)
    html = render_item(User("ann", "moderator"), lock=None, undo=ticket)
    assert f'action="/items/{IMAGE_ID}/undo"' in html and 'id="undo"' in html
    assert UndoTicket.parse(ticket.to_json()) == ticket
